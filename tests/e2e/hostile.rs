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
fn hostile_entries(
    files_dir: &str,
    granted: &str,
    fifo: &str,
) -> Vec<(&'static str, &'static str, String)> {
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
            // A FIFO in a granted directory: opening it would wait for a writer for ever.
            "snoop-fifo",
            "snoop",
            format!(
                "{fast}    grants:\n      files: [\"{files_dir}\"]\n    config:\n      mode: host\n      path: \"{fifo}\"\n"
            ),
        ),
        (
            // The grant the `system` plugin uses; the engine's environment holds secrets.
            "snoop-environ",
            "snoop",
            format!(
                "{fast}    grants:\n      files: [/proc]\n    config:\n      mode: host\n      path: /proc/self/environ\n"
            ),
        ),
        (
            "snoop-everything",
            "snoop",
            format!(
                "{fast}    grants:\n      files: [/]\n    config:\n      mode: host\n      path: /proc/self/cmdline\n"
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

    let fifo = dir.path().join("granted/pipe");
    mkfifo(&fifo);
    let hostile = hostile_entries(&files_dir, &granted, fifo.to_str().unwrap());
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

    // Plugins whose calls succeed but would flood the engine: 1 MiB of `host.log` per call,
    // and 100 new series a call of 64 labels of 1 KiB each.
    collectors.push_str(&format!(
        "  - name: flood-log\n    plugin: {}\n    interval: 400ms\n    config:\n      samples: 1\n      log_bytes: 1048576\n",
        test_plugin("flood").display()
    ));
    collectors.push_str(&format!(
        "  - name: churn\n    plugin: {}\n    interval: 200ms\n    limits:\n      max_series_bytes: 4MiB\n    config:\n      churn: {{ samples: 100, labels: 64, value_bytes: 1024 }}\n",
        test_plugin("flood").display()
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
            "snoop-fifo",
            &["is not a regular file (it is a FIFO); only regular files are read"],
        ),
        (
            "snoop-environ",
            &[
                "plugin `snoop-environ` may not read `/proc/self/environ`",
                "it holds a process's environment, where secrets live",
            ],
        ),
        (
            "snoop-everything",
            &[
                "plugin `snoop-everything` may not read `/proc/self/cmdline`",
                "it holds a process's arguments",
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

    // The log flood is cut per call and said once per call; the churn is refused by bytes
    // and said once, not on every call.
    assert!(
        out.contains("collect() logged more than limits.max_log_bytes = 64 KiB"),
        "{}",
        tail(&out)
    );
    let flood_lines = out.lines().filter(|l| l.contains(&"y".repeat(100))).count();
    let flood_calls = out
        .matches("collect() logged more than limits.max_log_bytes")
        .count();
    // 64 KiB holds 287 lines of 100 bytes (each line is charged 128 bytes more). The call
    // in progress may have logged its lines but not yet its warning.
    assert!(
        flood_calls >= 1 && flood_lines <= 288 * (flood_calls + 1),
        "{flood_lines} log lines in {flood_calls} calls"
    );
    assert_eq!(
        out.matches(
            "samples of new series dropped: they would exceed the plugin's limits.max_series"
        )
        .count(),
        1,
        "{}",
        tail(&out)
    );

    // No plugin's host call holds the shutdown (a FIFO read used to hang it for ever).
    let stopping = std::time::Instant::now();
    let status = engine.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", engine.output());
    assert!(
        stopping.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// The last 300 lines of the engine's output, without the wasm backtrace lines.
fn tail(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    lines[lines.len().saturating_sub(300)..].join("\n")
}

/// `telltale plugin run` of a plugin reading a FIFO (and, before the fix, blocked in
/// `open` for ever on a host thread) answers and exits promptly.
#[test]
fn plugin_run_exits_when_a_plugin_reads_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    mkfifo(&fifo);
    let config = format!(r#"{{"mode": "host", "path": "{}"}}"#, fifo.display());
    let grant = format!("files={}", dir.path().display());
    let mut child = crate::support::telltale()
        .args([
            "plugin",
            "run",
            test_plugin("snoop").to_str().unwrap(),
            "--config",
            &config,
            "--grant",
            &grant,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("`telltale plugin run` did not exit within 15s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("is not a regular file (it is a FIFO)"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
