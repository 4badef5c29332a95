//! The alert manager through the real binary: escalation to a second receiver when nobody
//! acknowledges, `telltale alerts`, `ack` and `silence` acting on the running engine through
//! the store, and all of it still there after a restart.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{Engine, Receiver, telltale};

const WAIT: Duration = Duration::from_secs(60);

fn write_config(dir: &Path, pager: &str, lead: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/always.rhai"),
        "const RULE = #{ name: \"always\", severity: \"critical\" };\nfn evaluate() { alert(1.0, #{ host: \"db1\" }) }\n",
    )
    .unwrap();
    let path = dir.join("telltale.yaml");
    std::fs::write(
        &path,
        format!(
            r#"engine:
  evaluation_interval: 200ms
  shutdown_grace: 1s
rules:
  dir: rules
  defaults: false
notifiers:
  - {{name: pager, kind: webhook, url: "{pager}", timeout: 2s}}
  - {{name: lead, kind: webhook, url: "{lead}", timeout: 2s}}
alerting:
  route:
    notifiers: [pager]
    group_by: [alertname]
    group_wait: 0s
    escalation: oncall
  escalation_policies:
    - name: oncall
      levels:
        - {{after: 0s, notify: [pager]}}
        - {{after: 2s, notify: [lead]}}
"#
        ),
    )
    .unwrap();
    path
}

fn run(args: &[&str], data_home: &Path) -> Output {
    telltale()
        .args(args)
        .env("XDG_DATA_HOME", data_home)
        .output()
        .expect("run telltale")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn escalation_ack_and_silence_act_on_the_running_engine_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pager = Receiver::start();
    let lead = Receiver::start();
    let config = write_config(dir.path(), &pager.url, &lead.url);
    let c = config.to_str().unwrap();
    let mut engine = Engine::start(&["run", "-c", c], dir.path(), &[]);

    let fired = pager.wait_for(WAIT, "the page", |r| r.json()["status"] == "firing");
    let fp = fired.json()["alert"]["fingerprint"]
        .as_str()
        .expect("fingerprint")
        .to_string();
    assert_eq!(fired.json()["reason"], "state_change");
    // Nobody acknowledged within 2 s: level 2 reaches the lead.
    let escalated = lead.wait_for(WAIT, "the escalation", |r| {
        r.json()["reason"] == "escalation"
    });
    assert_eq!(escalated.json()["alert"]["fingerprint"], fp.as_str());

    let listed = run(&["alerts", "-c", c], dir.path());
    let out = text(&listed);
    assert!(listed.status.success(), "{out}");
    assert!(out.contains(&fp) && out.contains("always{"), "{out}");

    let acked = run(
        &["ack", &fp, "--by", "alice", "-m", "on it", "-c", c],
        dir.path(),
    );
    let out = text(&acked);
    assert!(acked.status.success(), "{out}");
    assert!(out.contains("acknowledged by alice"), "{out}");

    let unknown = run(&["ack", "0000000000000000", "-c", c], dir.path());
    assert_eq!(unknown.status.code(), Some(1), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("telltale alerts"),
        "{}",
        text(&unknown)
    );

    let silenced = run(
        &[
            "silence",
            "add",
            "alertname=always",
            "--for",
            "1h",
            "--by",
            "bob",
            "-c",
            c,
        ],
        dir.path(),
    );
    let out = text(&silenced);
    assert!(silenced.status.success(), "{out}");
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("sil_"))
        .expect("the silence's id")
        .to_string();

    // Saved within a second; then a clean restart keeps every state.
    std::thread::sleep(Duration::from_millis(1500));
    engine.terminate(WAIT);
    let mut engine = Engine::start(&["run", "-c", c], dir.path(), &[]);
    let out = engine.wait_output(WAIT, "first evaluation");
    assert!(
        out.contains("alert manager state restored: 1 alert(s), 1 silence(s)"),
        "{out}"
    );

    let listed = run(&["alerts", "--json", "-c", c], dir.path());
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("JSON");
    let a = &json[0];
    assert_eq!(a["alert"]["fingerprint"], fp.as_str());
    assert_eq!(a["ack"]["by"], "alice");
    assert_eq!(a["ack"]["comment"], "on it");
    assert_eq!(a["silenced_by"][0], id.as_str());

    let list = run(&["silence", "list", "-c", c], dir.path());
    assert!(
        text(&list).contains(&id) && text(&list).contains("by bob"),
        "{}",
        text(&list)
    );
    let expired = run(&["silence", "expire", &id, "-c", c], dir.path());
    assert!(expired.status.success(), "{}", text(&expired));
    engine.terminate(WAIT);
    // The acknowledgement was announced to those who heard of the alert, and the restart
    // announced nothing again: one page in all.
    let all = pager.all();
    let reasons: Vec<String> = all
        .iter()
        .map(|r| r.json()["reason"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(reasons, ["state_change", "acknowledged"], "{all:#?}");
    let ack = &all[1].json()["alert"]["ack"];
    assert_eq!(ack["by"], "alice", "{ack}");
    assert_eq!(ack["comment"], "on it", "{ack}");
    assert!(all[0].json()["alert"]["ack"].is_null());
}
