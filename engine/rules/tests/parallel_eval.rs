//! A rule set large enough to be evaluated on several threads (`RuleSet::evaluate` splits
//! sets of a few hundred rules over the cores) behaves as one evaluated on the calling
//! thread: results in rule order, each rule's own values, errors located in their own file,
//! limits applied per rule, and log lines reaching the caller's subscriber.

use std::path::Path;
use std::sync::{Arc, Mutex};

use telltale_config::RulesConfig;
use telltale_diagnostics::Position;
use telltale_model::now_ms;
use telltale_rules::{RuleErrorKind, RuleSet};
use telltale_store::{SeriesStore, StoreLimits};

/// Rules in the set: with 64 or more per thread, two cores get two threads.
const RULES: usize = 400;

/// Rule `i`'s body (line 4, column 5 of its file).
fn body(i: usize) -> String {
    match i {
        // A host function's error, at the call.
        150 => r#"metric("x", #{ a: [1] })"#.to_string(),
        // A runaway loop, stopped by the operation limit and located by a second run.
        250 => "loop { }".to_string(),
        // Output goes to the log, naming the file.
        320 => r#"print("hello from r320"); []"#.to_string(),
        _ if i.is_multiple_of(3) => format!("alert({i})"),
        _ => "[]".to_string(),
    }
}

fn write_rules(dir: &Path) {
    for i in 0..RULES {
        let src = format!(
            "const RULE = #{{ name: \"r{i}\", severity: \"warning\" }};\n\nfn evaluate() {{\n    {}\n}}\n",
            body(i)
        );
        std::fs::write(dir.join(format!("r_{i:03}.rhai")), src).expect("write rule");
    }
}

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_set_split_over_threads_keeps_order_values_errors_and_logs() {
    let store = Arc::new(SeriesStore::new(StoreLimits::default()));
    let dir = tempfile::tempdir().expect("tempdir");
    write_rules(dir.path());
    let cfg = RulesConfig {
        max_operations: 100_000,
        ..RulesConfig::default()
    };
    let mut set = RuleSet::new(store, &cfg);
    let diags = set.load_dir(dir.path());
    assert!(diags.is_empty(), "{diags:?}");

    // Logged through a subscriber that is the default on this thread only, as in tests
    // and in an engine that sets one per task.
    let buf = LogBuf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let results = tracing::subscriber::with_default(subscriber, || set.evaluate(now_ms()));
    let logs = String::from_utf8_lossy(&buf.0.lock().expect("log buffer")).into_owned();

    assert_eq!(results.len(), RULES);
    let at_body = Some(Position { line: 4, column: 5 });
    for (i, r) in results.iter().enumerate() {
        // Files load in name order (r_000 … r_399), which is the evaluation order.
        assert_eq!(r.meta.name, format!("r{i}"), "result {i} out of order");
        match i {
            150 => {
                let e = r.outcome.as_ref().expect_err("a host function's error");
                assert_eq!(e.kind, RuleErrorKind::Runtime, "{e}");
                assert!(e.message.contains("label `a` must be a string"), "{e}");
                assert_eq!(e.file, dir.path().join("r_150.rhai"));
                assert_eq!(e.position, Some(Position { line: 4, column: 5 }), "{e}");
            }
            250 => {
                let e = r.outcome.as_ref().expect_err("stopped");
                assert_eq!(e.kind, RuleErrorKind::OperationLimit, "{e}");
                assert!(e.message.contains("100000 operations"), "{e}");
                assert_eq!(e.position, at_body, "located by the second run: {e}");
            }
            _ => {
                let alerts = r.outcome.as_ref().expect("rule runs");
                // Rules i % 3 == 0 return alert(i): value i; the others none.
                let values: Vec<f64> = alerts.iter().map(|a| a.value).collect();
                let want: Vec<f64> = if i.is_multiple_of(3) {
                    vec![i as f64]
                } else {
                    vec![]
                };
                assert_eq!(values, want, "rule r{i}");
            }
        }
    }
    assert!(logs.contains("print: hello from r320"), "{logs}");
    assert!(
        logs.contains("r_320.rhai"),
        "the print names its file: {logs}"
    );
    assert!(
        logs.contains("r_150.rhai") && logs.contains("r_250.rhai"),
        "each failure is logged once: {logs}"
    );
}
