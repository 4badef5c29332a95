//! `telltale test FILE.yaml...` (rule unit tests in promtool's format) and `telltale
//! replay` (the rules over the durable store's history). The work is in
//! `telltale_pipeline::{ruletest, replay}`; this is the command line around it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use telltale_model::now_ms;
use telltale_pipeline::replay::{self, ReplayError, ReplayOptions};
use telltale_pipeline::ruletest::{self, FileOutcome};

/// `telltale test`: 0 when every test passes, 1 when one fails, 2 when a file is bad.
pub(crate) fn test(files: &[PathBuf]) -> ExitCode {
    let (mut failed, mut bad) = (false, false);
    for file in files {
        match ruletest::run_file(file) {
            FileOutcome::Invalid(diags) => {
                bad = true;
                for d in &diags {
                    eprintln!("{d}\n");
                }
                eprintln!(
                    "{}: {} problem(s); its tests did not run.",
                    file.display(),
                    diags.len()
                );
            }
            FileOutcome::Ran(report) => {
                failed |= !report.passed();
                println!("{report}");
            }
        }
    }
    if bad {
        ExitCode::from(2)
    } else if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `telltale replay`: 0 when it ran (whatever fired), 1 when it could not.
pub(crate) fn replay(
    config: Option<&Path>,
    from: &str,
    to: &str,
    rules: Option<PathBuf>,
    step: Option<&str>,
) -> ExitCode {
    let loaded = match crate::load_config(config) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let now = now_ms();
    let parsed = (|| -> Result<ReplayOptions, String> {
        let step =
            match step {
                Some(s) => Some(humantime::parse_duration(s.trim()).map_err(|e| {
                    format!("--step `{s}`: not a duration ({e}); write it like `1m`")
                })?),
                None => None,
            };
        Ok(ReplayOptions {
            from: replay::parse_time(from, now).map_err(|e| format!("--from {e}"))?,
            to: replay::parse_time(to, now).map_err(|e| format!("--to {e}"))?,
            step,
            rules_dir: rules,
        })
    })();
    let opts = match parsed {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = replay::replay(&loaded, &opts, |t| println!("{t}"));
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(ReplayError::Rules(d)) => {
            eprintln!("{d}\n\nthe rules did not load; nothing was replayed.");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
