//! The command line, the `telltale` binary: `run`, `check`, `config`, `plugin` (the
//! plugin authors' tools in `plugin.rs`, `plugin new` in `scaffold.rs`) and `store` (the
//! durable store's `info` and `backup`, in `store.rs`).
//!
//! Owns argument parsing, logging set-up, signals and the async runtime's life. `run` and
//! `check` both build the engine through `telltale_pipeline::Engine::build`, so what `check`
//! accepts is what `run` starts with. Invariant: every command stops its runtime with a
//! bounded wait (`stop_runtime`), so a plugin's host call stuck in the kernel never keeps
//! the process alive.

mod alerts;
mod notify;
mod plugin;
mod ruletest;
mod scaffold;
mod scaling;
mod store;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use telltale_config::{self as config, LoadedConfig};
use telltale_diagnostics::Diagnostics;
use telltale_pipeline::Engine;

/// Telltale: collect → process → evaluate → notify, in one binary.
///
/// Collectors and analyzers are sandboxed WebAssembly plugins, rules are Rhai scripts that
/// reload when their files change, and alerts go to the console or to signed webhooks.
/// With no config file, Telltale collects system metrics, evaluates its built-in rules and
/// prints alerts to the console.
#[derive(Debug, Parser)]
#[command(name = "telltale", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the pipeline until SIGINT/SIGTERM.
    ///
    /// Without -c, uses the embedded default configuration (`telltale config default`
    /// prints it).
    Run {
        /// The YAML configuration file.
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check the configuration, the rules and the plugins without running anything else.
    ///
    /// Exits non-zero and prints every problem (file:line:column, message, hint) when
    /// anything is wrong.
    Check {
        /// The YAML configuration file (default: the embedded one).
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Tools for plugin authors: scaffold, run alone, inspect, list.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// List the firing alerts of a running engine (as it last saved them): what the alert
    /// manager does with each (silenced, inhibited, acknowledged, snoozed, escalation).
    Alerts {
        #[command(flatten)]
        target: alerts::Target,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge a firing alert: escalation of unacknowledged alerts stops, repeats stop,
    /// and the notifiers that were told it fires hear who acknowledged it.
    ///
    /// Applied by the running engine within a second; exits 3 when no engine answered
    /// (the command then waits for the next `telltale run`).
    Ack {
        /// The alert's fingerprint (`telltale alerts` lists them).
        fingerprint: String,
        #[command(flatten)]
        who: alerts::Who,
        #[command(flatten)]
        target: alerts::Target,
    },
    /// Withdraw an acknowledgement: escalation starts over.
    Unack {
        /// The alert's fingerprint.
        fingerprint: String,
        #[command(flatten)]
        who: alerts::Who,
        #[command(flatten)]
        target: alerts::Target,
    },
    /// Hear nothing of a firing alert until a time; then it is announced again if it still
    /// fires.
    Snooze {
        /// The alert's fingerprint.
        fingerprint: String,
        /// How long from now (`30m`, `2h`).
        #[arg(long = "for", value_name = "DURATION", conflicts_with = "until")]
        duration: Option<String>,
        /// Until when (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        #[command(flatten)]
        who: alerts::Who,
        #[command(flatten)]
        target: alerts::Target,
    },
    /// Silences: add, list, expire.
    Silence {
        #[command(subcommand)]
        command: alerts::SilenceCommand,
        #[command(flatten)]
        target: alerts::Target,
    },
    /// One configured notifier, by hand: `test` sends a sample notification through it,
    /// `preview` prints what it would send.
    Notify {
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
    /// List the decisions of scaling rules, newest first.
    ///
    /// Each line: when, the rule, the target and its change (with the rule's proposal
    /// before stabilisation), the reason, and whether the target's scaler applied it;
    /// --json adds the rule's inputs. Reads the durable store read-only, beside a running
    /// engine.
    Scaling {
        #[command(flatten)]
        args: scaling::ScalingArgs,
    },
    /// The durable store's database: what it holds, and a consistent backup, both while
    /// `telltale run` has it open.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Run rule unit tests (promtool's test file format; see docs/rule-tests.md).
    ///
    /// Exits 0 when every test passes, 1 when a test fails, 2 when a file is bad.
    Test {
        /// The test files.
        #[arg(value_name = "FILE.yaml", required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate the rules over the durable store's history and print when each alert
    /// would have fired and resolved. Reads the database read-only, beside a running
    /// engine.
    Replay {
        /// The configuration `telltale run` uses (default: the embedded one).
        #[arg(short, long, value_name = "FILE", env = "TELLTALE_CONFIG")]
        config: Option<PathBuf>,
        /// The first evaluation: RFC 3339 (`2026-12-01T10:00:00Z`), `now` or `-2h`.
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        from: String,
        /// The last evaluation (same forms as --from).
        #[arg(
            long,
            value_name = "TIME",
            allow_hyphen_values = true,
            default_value = "now"
        )]
        to: String,
        /// The rules directory, in place of the config's `rules.dir` (the built-in rules
        /// run beside it unless the config sets `rules.defaults: false`).
        #[arg(long, value_name = "DIR")]
        rules: Option<PathBuf>,
        /// Between evaluations (default: the config's `engine.evaluation_interval`).
        #[arg(long, value_name = "DURATION")]
        step: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the JSON Schema of the configuration file (for editor completion:
    /// `telltale config schema > telltale.schema.json`).
    Schema,
    /// Print the embedded default configuration, a starting point for your own.
    Default,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run(config.as_deref()),
        Command::Check { config } => check(config.as_deref()),
        Command::Plugin { command } => plugin::main(command),
        Command::Store { command } => store::main(command),
        Command::Alerts { target, json } => alerts::list(&target, json),
        Command::Ack {
            fingerprint,
            who,
            target,
        } => alerts::ack(&target, fingerprint, &who),
        Command::Unack {
            fingerprint,
            who,
            target,
        } => alerts::unack(&target, fingerprint, &who),
        Command::Snooze {
            fingerprint,
            duration,
            until,
            who,
            target,
        } => alerts::snooze(
            &target,
            fingerprint,
            duration.as_deref(),
            until.as_deref(),
            &who,
        ),
        Command::Silence { command, target } => alerts::silence(&target, command),
        Command::Notify { command } => notify::main(command),
        Command::Scaling { args } => scaling::main(&args),
        Command::Test { files } => ruletest::test(&files),
        Command::Replay {
            config,
            from,
            to,
            rules,
            step,
        } => ruletest::replay(config.as_deref(), &from, &to, rules, step.as_deref()),
        Command::Config { command } => match command {
            ConfigCommand::Schema => {
                match serde_json::to_string_pretty(&config::json_schema()) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: cannot print the schema: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            ConfigCommand::Default => {
                print!("{}", config::EMBEDDED_DEFAULT);
                ExitCode::SUCCESS
            }
        },
    }
}

fn load_config(path: Option<&Path>) -> Result<LoadedConfig, ExitCode> {
    match path {
        None => Ok(config::embedded_default()),
        Some(p) => config::load(p).map_err(|d| refused(&d, &p.display().to_string())),
    }
}

/// Loads the config and builds the engine from it: the one path `run` and `check` share.
fn build_engine(path: Option<&Path>) -> Result<Engine, ExitCode> {
    let loaded = load_config(path)?;
    Engine::build(&loaded).map_err(|d| refused(&d, &loaded.display_name()))
}

/// Prints what stopped the config from being used, and the exit code that says so.
fn refused(d: &Diagnostics, name: &str) -> ExitCode {
    eprintln!("{d}");
    eprintln!("\n{} problem(s) in {name}; nothing was started.", d.0.len());
    ExitCode::FAILURE
}

fn init_logging(filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

/// Removes the variables the config read from the process environment: their values now
/// live only in the loaded config, so nothing that reads the environment later (a library,
/// a child process) sees a secret. `/proc/PID/environ` still shows the environment the
/// process started with, which is why plugins may never read it (`plugin_host::file_read`).
fn forget_config_secrets(names: &[String]) {
    // Variables the engine itself reads later (the data directory comes from HOME or
    // XDG_DATA_HOME) or that describe the system rather than hold a secret stay.
    let keep = |name: &str| {
        name.starts_with("XDG_")
            || name.starts_with("LC_")
            || matches!(
                name,
                "HOME"
                    | "USER"
                    | "LOGNAME"
                    | "PATH"
                    | "PWD"
                    | "TMPDIR"
                    | "SHELL"
                    | "LANG"
                    | "TZ"
                    | "HOSTNAME"
                    | "RUST_LOG"
            )
    };
    for name in names.iter().filter(|n| !keep(n)) {
        // SAFETY: called before the async runtime or any other thread is started, so no
        // other thread can be reading the environment.
        unsafe { std::env::remove_var(name) };
    }
}

/// How long a command waits, once its work is done, for the runtime's blocking threads.
const RUNTIME_EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Shuts the runtime down without waiting for ever on a blocking thread: a host call of a
/// plugin may be stuck in the kernel (a hung file system, a driver), and dropping the
/// runtime would wait for it, so the command would never exit.
pub(crate) fn stop_runtime(rt: tokio::runtime::Runtime) {
    rt.shutdown_timeout(RUNTIME_EXIT_WAIT);
}

fn run(path: Option<&Path>) -> ExitCode {
    let mut engine = match build_engine(path) {
        Ok(e) => e,
        Err(code) => return code,
    };
    // A database file that is not ours, too new or corrupt is refused like a bad config:
    // before anything starts.
    if let Err(d) = engine.open_database() {
        let name = engine.config().display_name();
        return refused(&d, &name);
    }
    init_logging(&engine.config().config.engine.log_level);
    forget_config_secrets(&engine.config().env_vars);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let reloads = {
        let _runtime = rt.enter();
        reload_signal()
    };
    let result = rt.block_on(engine.run(shutdown_signal(), reloads));
    stop_runtime(rt);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on the first SIGINT or SIGTERM; a second one exits at once.
async fn shutdown_signal() {
    wait_for_signal().await;
    tokio::spawn(async {
        wait_for_signal().await;
        eprintln!("second signal: exiting without waiting for notifications");
        std::process::exit(130);
    });
}

/// One message per SIGHUP (several pending ones coalesce): the pipeline reloads every
/// plugin. Must be called inside the runtime.
fn reload_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) =
                            tx.try_send(())
                        {
                            break;
                        }
                    }
                });
            }
            Err(e) => tracing::warn!(
                "cannot listen for SIGHUP ({e}); plugins reload only when their files change"
            ),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check(path: Option<&Path>) -> ExitCode {
    let engine = match build_engine(path) {
        Ok(e) => e,
        Err(code) => return code,
    };
    init_logging("warn");
    // Problems `run` would start despite (a rule file that does not compile) fail a check.
    let mut problems: Vec<String> = engine.problems().iter().map(ToString::to_string).collect();

    // Plugins: compile (through the cache), check grants, instantiate and run `init`.
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    problems.extend(rt.block_on(engine.check_plugins()));
    stop_runtime(rt);

    let loaded = engine.config();
    let cfg = &loaded.config;
    if problems.is_empty() {
        println!(
            "ok: {} — {} collector(s), {} analyzer(s), {} rule(s), {} notifier(s)",
            loaded.display_name(),
            cfg.collectors.len(),
            cfg.analyzers.len(),
            engine.rule_count(),
            cfg.notifiers.len()
        );
        ExitCode::SUCCESS
    } else {
        for p in &problems {
            eprintln!("{p}\n");
        }
        eprintln!("{} problem(s) found.", problems.len());
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    #[test]
    fn a_stuck_blocking_task_does_not_hold_the_exit() {
        let Ok(rt) = super::runtime() else {
            panic!("no runtime")
        };
        // A host call stuck in the kernel stands in for a hung file system or driver.
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        rt.spawn_blocking(move || {
            let _ = stuck.recv();
        });
        let (done_tx, done) = std::sync::mpsc::channel();
        let start = Instant::now();
        std::thread::spawn(move || {
            super::stop_runtime(rt);
            let _ = done_tx.send(());
        });
        let stopped = done.recv_timeout(Duration::from_secs(10));
        drop(release);
        assert!(stopped.is_ok(), "the runtime waited for the stuck task");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
}
