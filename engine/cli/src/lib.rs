//! The command line: `telltale run`, `check`, `config` and `plugin` (the authors' tools in `plugin.rs`).

mod plugin;
mod scaffold;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use telltale_config::{self as config, LoadedConfig};
use telltale_diagnostics::Diagnostic;
use telltale_plugin_host::{PluginHost, PluginSpec};
use telltale_rules::RuleSet;
use telltale_store::{SeriesStore, StoreLimits};

/// Telltale: collect → process → evaluate → notify, in one binary.
///
/// Collectors and analyzers are sandboxed WebAssembly plugins, rules are Rhai scripts that
/// reload when their files change, and alerts go to the console or to signed webhooks.
/// With no config file, Telltale collects system metrics, evaluates its built-in rules and
/// prints alerts to the console.
#[derive(Debug, Parser)]
#[command(name = "telltale", version, propagate_version = true)]
pub struct Cli {
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
        Some(p) => config::load(p).map_err(|d| {
            eprintln!("{d}");
            eprintln!(
                "\n{} problem(s) in {}; nothing was started.",
                d.0.len(),
                p.display()
            );
            ExitCode::FAILURE
        }),
    }
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
    let loaded = match load_config(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_logging(&loaded.config.engine.log_level);
    forget_config_secrets(&loaded.env_vars);
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let reloads = {
        let _runtime = rt.enter();
        reload_signal()
    };
    let result = rt.block_on(telltale_pipeline::run(loaded, shutdown_signal(), reloads));
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
    let loaded = match load_config(path) {
        Ok(l) => l,
        Err(code) => return code,
    };
    init_logging("warn");
    let cfg = &loaded.config;
    let mut problems: Vec<String> = Vec::new();

    // Rules: compile every file; metadata and syntax errors carry positions.
    let rule_count;
    match loaded.rules_dir() {
        Some(dir) => {
            if !dir.is_dir() {
                problems.push(
                    Diagnostic::new(
                        loaded.display_name(),
                        None,
                        None,
                        format!("the rules directory {} does not exist", dir.display()),
                    )
                    .with_hint("create it, or fix `rules.dir` (relative paths start at the config file's directory)")
                    .to_string(),
                );
                rule_count = 0;
            } else {
                let store = std::sync::Arc::new(SeriesStore::new(StoreLimits::default()));
                let mut set = RuleSet::new(store, &cfg.rules);
                let diags = set.load_dir(&dir);
                problems.extend(diags.iter().map(ToString::to_string));
                rule_count = set.rules().len();
            }
        }
        None => {
            let store = std::sync::Arc::new(SeriesStore::new(StoreLimits::default()));
            let mut set = RuleSet::new(store, &cfg.rules);
            let diags = set.load_embedded_defaults();
            problems.extend(diags.iter().map(ToString::to_string));
            rule_count = set.rules().len();
        }
    }

    // Notifiers: the dispatcher validates what the config types cannot express.
    if let Err(e) = telltale_notify::Dispatcher::new(&cfg.notifiers, &cfg.routes, None) {
        problems.push(format!("{}: error: {e}", loaded.display_name()));
    }

    // Plugins: compile (through the cache), check grants, instantiate and run `init`.
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let plugin_problems = rt.block_on(async {
        let mut out = Vec::new();
        let host = match PluginHost::new(Some(loaded.data_dir().join("cache"))) {
            Ok(h) => h,
            Err(e) => return vec![format!("error: cannot start the plugin host: {e}")],
        };
        for c in &cfg.collectors {
            if let Err(e) = host
                .collector(PluginSpec::collector(c, &loaded.base_dir))
                .await
            {
                out.push(format!(
                    "{}: error: collector `{}`: {e}",
                    loaded.display_name(),
                    c.name
                ));
            }
        }
        for a in &cfg.analyzers {
            if let Err(e) = host
                .analyzer(PluginSpec::analyzer(a, &loaded.base_dir))
                .await
            {
                out.push(format!(
                    "{}: error: analyzer `{}`: {e}",
                    loaded.display_name(),
                    a.name
                ));
            }
        }
        out
    });
    stop_runtime(rt);
    problems.extend(plugin_problems);

    if problems.is_empty() {
        println!(
            "ok: {} — {} collector(s), {} analyzer(s), {} rule(s), {} notifier(s)",
            loaded.display_name(),
            cfg.collectors.len(),
            cfg.analyzers.len(),
            rule_count,
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
