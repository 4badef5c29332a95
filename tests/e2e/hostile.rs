//! Hostile plugins against the real binary: one engine runs a healthy `system` collector
//! beside every hostile test plugin of `tests/plugins/`. Each hostile case must be contained
//! with a log message naming the plugin and the limit it hit, while the healthy collector
//! keeps collecting (a rule fires on its call counter) and the engine keeps running.

use std::time::Duration;

use crate::support::{Engine, Receiver, test_plugin};
use crate::write_config;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WAIT: Duration = Duration::from_secs(45);

/// The hostile instances: (name, plugin, extra YAML lines of the entry, indented 4).
fn hostile_entries(files_dir: &str, granted: &str) -> Vec<(&'static str, &'static str, String)> {
    let fast = "    limits:\n      timeout: 300ms\n".to_string();
    // The flood needs room (memory, and time on a loaded machine) to build its output:
    // the limit under test is the sample count, not the memory or the deadline.
    let roomy = "    interval: 2s\n    limits:\n      memory: 256MiB\n      timeout: 20s\n";
    vec![
        ("hang", "hang", fast.clone()),
        ("alloc", "alloc", fast.clone()),
        ("recurse", "recurse", fast.clone()),
        ("panic", "panic", fast.clone()),
        (
            "flood",
            "flood",
            format!("{roomy}    config:\n      samples: 1000000\n"),
        ),
        (
            "flood-names",
            "flood",
            format!("{roomy}    config:\n      samples: 1\n      name_bytes: 100000\n"),
        ),
        (
            "flood-labels",
            "flood",
            format!("{roomy}    config:\n      samples: 1\n      label_value_bytes: 1000000\n"),
        ),
        (
            "snoop-wasi",
            "snoop",
            format!(
                "{fast}    grants:\n      files: [\"{files_dir}\"]\n    config:\n      mode: wasi\n"
            ),
        ),
        (
            "snoop-host",
            "snoop",
            format!(
                "{fast}    grants:\n      files: [\"{files_dir}\"]\n    config:\n      mode: host\n"
            ),
        ),
        (
            "fetch-ungranted",
            "fetch",
            format!(
                "{fast}    grants:\n      http: [\"{granted}\"]\n    config:\n      url: http://example.invalid:8080/metrics\n"
            ),
        ),
        (
            "slow-over",
            "slow",
            format!("{fast}    config:\n      ms: 5000\n"),
        ),
    ]
}

#[test]
fn hostile_plugins_are_contained_while_a_healthy_one_keeps_collecting() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let granted = receiver
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/hook")
        .to_string();
    let files_dir = dir.path().join("granted");
    std::fs::create_dir_all(&files_dir).unwrap();
    let files_dir = files_dir.display().to_string();

    let hostile = hostile_entries(&files_dir, &granted);
    let mut collectors = String::new();
    for (name, plugin, extra) in &hostile {
        let path = test_plugin(plugin);
        assert!(path.exists(), "test plugin missing: {}", path.display());
        collectors.push_str(&format!(
            "  - name: {name}\n    plugin: {}\n{}{extra}",
            path.display(),
            if extra.contains("interval:") {
                ""
            } else {
                "    interval: 400ms\n"
            }
        ));
    }
    // Healthy plugins beside them: a slow call under its deadline, a granted fetch.
    collectors.push_str(&format!(
        "  - name: slow-ok\n    plugin: {}\n    interval: 400ms\n    limits:\n      timeout: 5s\n    config:\n      ms: 20\n",
        test_plugin("slow").display()
    ));
    collectors.push_str(&format!(
        "  - name: fetch-granted\n    plugin: {}\n    interval: 400ms\n    grants:\n      http: [\"{granted}\"]\n    config:\n      url: http://{granted}/probe\n",
        test_plugin("fetch").display()
    ));

    let config = write_config(dir.path(), &receiver.url, &collectors);

    // Fires once the healthy plugins kept working and every hostile one has failed.
    let names: Vec<String> = hostile.iter().map(|(n, _, _)| format!("\"{n}\"")).collect();
    std::fs::write(
        dir.path().join("rules/survives.rhai"),
        format!(
            r#"const RULE = #{{ name: "survived_hostile", severity: "info" }};

fn calls(plugin, outcome) {{
    let v = metric("telltale_plugin_calls_total", #{{ plugin: plugin, outcome: outcome }});
    if type_of(v) == "()" {{ 0.0 }} else {{ v }}
}}

fn evaluate() {{
    let failed = 0;
    for p in [{}] {{
        if calls(p, "error") >= 1.0 {{ failed += 1; }}
    }}
    let ok = calls("system", "ok");
    if ok >= 10.0 && calls("slow-ok", "ok") >= 3.0 && calls("fetch-granted", "ok") >= 2.0 && failed == {} {{
        alert(ok)
    }} else {{
        []
    }}
}}
"#,
            names.join(", "),
            hostile.len()
        ),
    )
    .unwrap();

    let mut engine = Engine::start(
        &["run", "-c", config.to_str().unwrap()],
        dir.path(),
        &[("E2E_WEBHOOK_SECRET", SECRET)],
    );
    // Waits for the alert, failing early (with the engine's log) if the engine exits.
    let deadline = std::time::Instant::now() + WAIT;
    let firing = loop {
        let found = receiver
            .all()
            .into_iter()
            .find(|r| r.path == "/hook" && r.json()["status"] == "firing");
        if let Some(r) = found {
            break r;
        }
        assert!(
            engine.running(),
            "the engine exited; output:\n{}",
            tail(&engine.output())
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no survived_hostile alert within {WAIT:?}; output:\n{}",
            tail(&engine.output())
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(firing.json()["alert"]["rule"], "survived_hostile");
    assert!(engine.running(), "the engine keeps running");

    // Each failure is in the log, naming the plugin and the limit.
    let expected: &[(&str, &[&str])] = &[
        (
            "hang",
            &["plugin `hang`: collect() exceeded its 300ms deadline"],
        ),
        (
            "alloc",
            &["plugin `alloc`: memory limit 64 MiB exceeded in collect()"],
        ),
        (
            "recurse",
            &[
                "plugin `recurse`: collect() crashed:",
                "call stack exhausted",
            ],
        ),
        (
            "panic",
            &[
                "plugin `panic`: collect() crashed: panicked at",
                "the panic plugin gave up after 1 call(s)",
            ],
        ),
        (
            "flood",
            &[
                "plugin `flood`: collect() returned 1000000 samples, more than limits.max_samples = 100000",
            ],
        ),
        (
            "flood-names",
            &[
                "plugin `flood-names`: collect() returned sample #0 with a 100000-byte name",
                "longer than limits.max_name_bytes = 256",
            ],
        ),
        (
            "flood-labels",
            &[
                "plugin `flood-labels`: collect() returned sample #0 `flood_value` whose label `blob` has a 1000000-byte value, longer than limits.max_label_bytes = 1024",
            ],
        ),
        (
            "snoop-wasi",
            &[
                "plugin `snoop-wasi`: collect() failed: reading /etc/passwd through wasi was refused",
            ],
        ),
        (
            "snoop-host",
            &[
                "plugin `snoop-host`: collect() failed: reading /etc/passwd through host was refused",
                "plugin `snoop-host` may not read `/etc/passwd`",
            ],
        ),
        (
            "fetch-ungranted",
            &[
                "plugin `fetch-ungranted`: collect() failed: `example.invalid:8080` is not granted to plugin `fetch-ungranted`",
            ],
        ),
        (
            "slow-over",
            &["plugin `slow-over`: collect() exceeded its 300ms deadline"],
        ),
    ];
    assert_eq!(
        expected.len(),
        hostile.len(),
        "every hostile plugin is checked"
    );
    let out = engine.output();
    for (name, needles) in expected {
        for needle in *needles {
            assert!(
                out.contains(needle),
                "{name}: the log lacks {needle:?}; output:\n{out}"
            );
        }
    }
    assert!(!out.contains("LEAKED"), "a forbidden file was read:\n{out}");
    assert!(
        receiver.all().iter().any(|r| r.path == "/probe"),
        "the granted fetch reached the server"
    );
    assert!(
        receiver
            .all()
            .iter()
            .all(|r| r.path == "/probe" || r.path == "/hook"),
        "{:?}",
        receiver.all()
    );

    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
}

/// The last 300 lines of the engine's output, without the wasm backtrace lines.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    lines[lines.len().saturating_sub(300)..].join("\n")
}
