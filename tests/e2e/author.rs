//! The plugin author's tools, end to end with the real binary: `telltale plugin new`
//! scaffolds crates that a real `cargo` builds for `wasm32-wasip2` and tests natively, and
//! `plugin run` / `inspect` / `list` work on them and on the standard and test plugins.
//!
//! The scaffolded crates are built in a target directory shared between runs
//! (`<target>/author-e2e`), so `wit-bindgen` is compiled once, not on every run. Their
//! crates.io dependencies come from the local cargo cache when it has them (`--offline`
//! is tried first), else from the registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::{telltale, test_plugin};

/// Scaffolded crates share one target directory: build them one at a time.
static SCAFFOLD_BUILDS: Mutex<()> = Mutex::new(());

/// Generous: the first build on a cold cache compiles wit-bindgen's proc macro.
const BUILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Where scaffolded crates are built: beside the engine's own target directory.
fn scaffold_target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_telltale"))
        .ancestors()
        .nth(2)
        .map(|t| t.join("author-e2e"))
        .unwrap_or_else(|| std::env::temp_dir().join("telltale-author-e2e"))
}

/// Runs `cmd` with its output captured, killing it after `limit`.
fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {limit:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

/// `cargo ARGS` in `dir` with the shared target directory and none of the outer build's
/// settings.
fn cargo(dir: &Path, args: &[&str], what: &str) -> Output {
    let run = |offline: bool| {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(args)
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", scaffold_target_dir());
        if offline {
            cmd.arg("--offline");
        }
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTDOCFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_MAKEFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        run_bounded(cmd, BUILD_LIMIT, what)
    };
    let out = run(true);
    if out.status.success() {
        return out;
    }
    // The local cache may lack a crate the resolver picks: let cargo fetch it.
    let online = run(false);
    assert!(
        online.status.success(),
        "{what} failed\n--- offline attempt:\n{}\n--- online attempt:\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&online.stderr)
    );
    online
}

/// `telltale ARGS` with its data directory in `data`, bounded.
fn tt(data: &Path, args: &[&str]) -> Output {
    let mut cmd = telltale();
    cmd.args(args).env("XDG_DATA_HOME", data);
    run_bounded(cmd, Duration::from_secs(120), &format!("telltale {args:?}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Scaffolds `name` in `dir`, runs its own tests natively and builds it for
/// `wasm32-wasip2`; returns the component's path.
fn scaffold_and_build(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let out = tt(
        dir,
        &[
            "plugin",
            "new",
            name,
            "--kind",
            kind,
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "plugin new: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Created the"),
        "{}",
        text(&out.stdout)
    );
    let root = dir.join(name);
    for f in [
        "Cargo.toml",
        "README.md",
        "src/lib.rs",
        "telltale-sdk/wit/plugin.wit",
    ] {
        assert!(root.join(f).is_file(), "{f} missing");
    }
    // The same name again is refused rather than overwritten.
    let again = tt(
        dir,
        &["plugin", "new", name, "--dir", dir.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"));

    let test = cargo(&root, &["test"], &format!("cargo test in {name}"));
    let test_out = text(&test.stdout);
    assert!(
        test_out.contains("test result: ok") && !test_out.contains(" 0 passed"),
        "{test_out}"
    );

    cargo(
        &root,
        &["build", "--release", "--target", "wasm32-wasip2"],
        &format!("cargo build in {name}"),
    );
    let wasm = scaffold_target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(wasm.is_file(), "{} missing", wasm.display());
    // Keep a private copy: the shared target directory is rebuilt by later steps.
    let copy = dir.join(format!("{name}.wasm"));
    std::fs::copy(&wasm, &copy).unwrap();
    copy
}

#[test]
fn scaffolded_collector_builds_passes_its_tests_and_runs() {
    let _serial = SCAFFOLD_BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let wasm = scaffold_and_build(dir.path(), "my-probe", "collector");
    let wasm_s = wasm.to_str().unwrap();

    let out = tt(
        dir.path(),
        &[
            "plugin",
            "run",
            wasm_s,
            "--count",
            "2",
            "--interval",
            "100ms",
            "--json",
            "--config",
            "value: 42\nsource: e2e",
        ],
    );
    assert!(out.status.success(), "plugin run: {}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "one sample per call: {lines:?}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["type"], "sample");
        assert_eq!(line["call"], i + 1);
        assert_eq!(line["name"], "my_probe_value");
        assert_eq!(line["value"], 42.0);
        assert_eq!(line["labels"]["source"], "e2e");
        assert!(line["timestamp_ms"].as_i64().unwrap() > 1_600_000_000_000);
    }

    // A config the plugin rejects is reported with its message, exit non-zero.
    let out = tt(
        dir.path(),
        &["plugin", "run", wasm_s, "--config", r#"{"valeu": 1}"#],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid config") && err.contains("valeu"),
        "{err}"
    );

    let out = tt(dir.path(), &["plugin", "inspect", wasm_s]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(report.contains("world:     collector"), "{report}");
    assert!(report.contains("telltale:plugin@0.3.0"), "{report}");
    assert!(report.contains("accepted:  yes"), "{report}");

    // The same plugin built against another contract version is refused, clearly.
    let wit = dir.path().join("my-probe/telltale-sdk/wit/plugin.wit");
    let contract = std::fs::read_to_string(&wit).unwrap();
    std::fs::write(&wit, contract.replace("@0.3.0", "@0.4.0")).unwrap();
    let future = scaffold_target_dir().join("wasm32-wasip2/release/my_probe.wasm");
    cargo(
        &dir.path().join("my-probe"),
        &["build", "--release", "--target", "wasm32-wasip2"],
        "cargo build of the 0.4.0 variant",
    );
    let out = tt(dir.path(), &["plugin", "inspect", future.to_str().unwrap()]);
    let report = text(&out.stdout);
    assert!(
        !out.status.success(),
        "a 0.4.0 plugin must not be accepted:\n{report}"
    );
    assert!(
        report.contains("contract:  telltale:plugin@0.4.0"),
        "{report}"
    );
    assert!(report.contains("accepted:  no"), "{report}");
    assert!(
        report.contains("built against telltale:plugin@0.4.0") && report.contains("accepts 0.3.x"),
        "{report}"
    );
    let out = tt(dir.path(), &["plugin", "run", future.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("0.4.0"), "{}", text(&out.stderr));
}

#[test]
fn scaffolded_analyzer_builds_passes_its_tests_and_runs() {
    let _serial = SCAFFOLD_BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let wasm = scaffold_and_build(dir.path(), "my-trend", "analyzer");
    let input = dir.path().join("my-trend/sample-input.jsonl");
    let out = tt(
        dir.path(),
        &[
            "plugin",
            "run",
            wasm.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--config",
            r#"{"threshold": 10}"#,
            "--json",
        ],
    );
    assert!(out.status.success(), "plugin run: {}", text(&out.stderr));
    let lines = json_lines(&out);
    let jobs = lines
        .iter()
        .find(|l| l["type"] == "sample" && l["labels"]["queue"] == "jobs")
        .unwrap_or_else(|| panic!("no sample for queue=jobs: {lines:?}"));
    assert_eq!(jobs["name"], "queue_depth_change");
    assert_eq!(jobs["value"], 18.0);
    let events: Vec<_> = lines.iter().filter(|l| l["type"] == "event").collect();
    assert_eq!(events.len(), 1, "{lines:?}");
    assert_eq!(events[0]["kind"], "large-change");
    assert_eq!(events[0]["labels"]["queue"], "jobs");
}

#[test]
fn plugin_run_prints_a_table_and_refuses_ungranted_capabilities() {
    let dir = tempfile::tempdir().unwrap();
    let out = tt(
        dir.path(),
        &[
            "plugin",
            "run",
            "system",
            "--grant",
            "system",
            // Harmless while unused; the standard plugin may read /proc and /sys itself.
            "--grant",
            "files=/proc",
            "--grant",
            "files=/sys",
            "--count",
            "2",
            "--interval",
            "100ms",
        ],
    );
    let table = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(table.contains("call 2/2"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("system_memory_total_bytes "))
        .unwrap_or_else(|| panic!("no memory row:\n{table}"));
    let value: f64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(value > 0.0, "{row}");

    let out = tt(dir.path(), &["plugin", "run", "system"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not granted"), "{err}");
    assert!(err.contains("--grant system"), "{err}");

    let out = tt(
        dir.path(),
        &["plugin", "run", "system", "--grant", "teleport"],
    );
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("unknown grant `teleport`"));

    let out = tt(dir.path(), &["plugin", "run", "window-stats"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--input"));
}

#[test]
fn plugin_inspect_and_list() {
    let dir = tempfile::tempdir().unwrap();
    let hang = test_plugin("hang");
    let out = tt(dir.path(), &["plugin", "inspect", hang.to_str().unwrap()]);
    let report = text(&out.stdout);
    assert!(out.status.success(), "{report}\n{}", text(&out.stderr));
    assert!(report.contains("world:     collector"), "{report}");
    assert!(report.contains("sha256:"), "{report}");
    let exports = report.split("exports:").nth(1).unwrap();
    assert!(
        exports.contains("init") && exports.contains("collect"),
        "{report}"
    );
    assert!(report.contains("accepted:  yes"), "{report}");

    let not_wasm = dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, "this is text").unwrap();
    let out = tt(
        dir.path(),
        &["plugin", "inspect", not_wasm.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not a WebAssembly file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let out = tt(dir.path(), &["plugin", "list"]);
    assert!(out.status.success());
    let list = text(&out.stdout);
    assert!(
        list.lines()
            .any(|l| l.starts_with("system ") && l.contains("collector")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("window-stats ") && l.contains("analyzer")),
        "{list}"
    );
}
