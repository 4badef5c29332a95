//! The assembly: builds every stage from a configuration ([`Engine::build`], shared by
//! `telltale run` and `telltale check`) and runs them until shutdown.
//!
//! ```text
//! plugin tasks (collectors, analyzers) ──▶ store ◀── ingest listeners
//!                          │           (analyzers read windows, write samples and events)
//!                     rule task (every evaluation tick; reloads changed rule files)
//!                          │ AlertCandidate → AlertManager (alerts) → Notification
//!                          │   → AlertRouter (routing; timers and operators' commands
//!                          │     every second, `alerting.rs`) → Delivery
//!                          │ ScalingProposal ──▶ scaling task (`scaling.rs`): decide,
//!                          │     record, apply ──▶ decisions back as notifications
//!                          ▼
//!                     Dispatcher (one bounded queue + worker per notifier)
//! ```
//!
//! Owns the wiring and nothing else: which task runs what, how they stop, how reloads
//! reach them. Invariants:
//! * Data flows one way; this is the only crate that depends on every stage, so the stages
//!   never need each other.
//! * Each plugin instance has its own task, so a slow or hung plugin delays only itself;
//!   the plugin host stops a call at its deadline.
//! * The rule task only evaluates; the store maintains itself in its own task.
//! * On SIGINT/SIGTERM the tasks stop taking new work, then the dispatcher gets the grace
//!   period to deliver what is queued; the rest stays in the outbox for the next start.
//! * With the durable store (`store.enabled`, opened by `run` only: `check` creates no
//!   file), alert state and every notification are on disk before anything depends on
//!   them, so even `kill -9` loses neither (`durable.rs`).

mod alerting;
mod durable;
mod plugins;
mod reload;
pub mod replay;
pub mod ruletest;
mod scaling;
mod supervise;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{error, info, warn};

use telltale_alerts::AlertManager;
use telltale_config::LoadedConfig;
use telltale_diagnostics::{Diagnostic, Diagnostics};
use telltale_model::{Labels, Notification, Sample, TimestampMs, now_ms, self_metrics};
use telltale_notify::{Dispatcher, DispatcherHandle};
use telltale_plugin_host::{PluginHost, PluginSource, PluginSpec};
use telltale_rules::{ReloadOutcome, RuleResult, RuleSet, RuleWatcher};
use telltale_store::disk::{Database, Disk};
use telltale_store::{SeriesStore, StoreLimits};

use reload::{PluginWatcher, RELOAD_CHANNEL, Reload, watch_key};

/// Everything `telltale run` starts, built from a configuration and checked once.
///
/// `telltale run` and `telltale check` both go through [`Engine::build`], so what `check`
/// accepts is exactly what `run` starts with, and every semantic check of the config
/// (`telltale_config::check`) happens there, once, with file:line:column.
pub struct Engine {
    loaded: LoadedConfig,
    store: Arc<SeriesStore>,
    host: PluginHost,
    dispatcher: Dispatcher,
    rules: RuleSet,
    problems: Vec<Diagnostic>,
    /// Opened by [`Engine::open_database`], not by `build` (see there).
    database: Option<Arc<Database>>,
}

impl Engine {
    /// Checks the configuration and builds every stage that can be built without starting
    /// anything: the store, the plugin host (which creates its compile-cache directory),
    /// the notifiers (not started), the rule set. No socket is bound, no plugin is called
    /// and the durable store's database is not opened ([`Engine::open_database`]).
    ///
    /// `Err` holds what stops the engine from starting at all. Problems `run` tolerates
    /// (a rule file that does not compile: the other rules run) are in
    /// [`Engine::problems`]; `check` reports them as failures.
    pub fn build(loaded: &LoadedConfig) -> Result<Engine, Diagnostics> {
        telltale_config::check(loaded)?;
        let cfg = &loaded.config;
        let data_dir = loaded.data_dir();
        let fatal = |message: String| {
            Diagnostics(vec![Diagnostic::new(
                loaded.display_name(),
                None,
                None,
                message,
            )])
        };
        let store = Arc::new(SeriesStore::new(StoreLimits {
            retention: cfg.engine.retention.get(),
            max_points_per_series: cfg.engine.max_points_per_series,
            max_series: cfg.engine.max_series,
            max_series_bytes: usize::try_from(cfg.engine.max_series_bytes.0).unwrap_or(usize::MAX),
            ..StoreLimits::default()
        }));
        let host = PluginHost::new(Some(data_dir.join("cache")))
            .map_err(|e| fatal(format!("cannot start the plugin host: {e}")))?;
        let dispatcher = Dispatcher::new(&cfg.notifiers)
            .map_err(|e| fatal(format!("invalid notifier configuration: {e}")))?;

        let mut rules = RuleSet::new(store.clone(), &cfg.rules);
        let mut problems = match loaded.rules_dir() {
            Some(dir) if !dir.is_dir() => vec![
                Diagnostic::new(
                    loaded.display_name(),
                    None,
                    None,
                    format!("the rules directory {} does not exist", dir.display()),
                )
                .with_hint(
                    "create it, or fix `rules.dir` (relative paths start at the config \
                     file's directory)",
                ),
            ],
            Some(dir) => rules.load_dir(&dir),
            None => Vec::new(),
        };
        // The defaults run beside `rules.dir`'s rules, which may replace them by name.
        if cfg.rules.defaults {
            problems.extend(rules.load_defaults_beside_loaded());
        }
        Ok(Engine {
            loaded: loaded.clone(),
            store,
            host,
            dispatcher,
            rules,
            problems,
            database: None,
        })
    }

    /// Opens the durable store's database (`store.path` under the data directory),
    /// creating it if missing, unless `store.enabled` is false; a second call returns the
    /// one already open. Not part of [`Engine::build`] because `check` builds too and must
    /// create no file; [`Engine::run`] calls it before starting anything, and a caller may
    /// call it earlier to refuse a bad database file before anything else happens. The
    /// error names the file and what to do.
    pub fn open_database(&mut self) -> Result<Option<&Arc<Database>>, Diagnostics> {
        if self.database.is_none() {
            self.database = durable::open(&self.loaded)?;
        }
        Ok(self.database.as_ref())
    }

    /// The durable store's database, once [`Engine::open_database`] opened it.
    pub fn database(&self) -> Option<&Arc<Database>> {
        self.database.as_ref()
    }

    /// The configuration the engine was built from.
    pub fn config(&self) -> &LoadedConfig {
        &self.loaded
    }

    /// Problems `run` starts despite (logged as errors) and `check` fails on.
    pub fn problems(&self) -> &[Diagnostic] {
        &self.problems
    }

    /// How many rules loaded.
    pub fn rule_count(&self) -> usize {
        self.rules.rules().len()
    }

    /// Loads every configured plugin once, the way its task will (compile through the
    /// cache, check grants, instantiate, run `init`), and describes each failure.
    pub async fn check_plugins(&self) -> Vec<String> {
        let loaded = &self.loaded;
        let cfg = &loaded.config;
        let mut out = Vec::new();
        for plugin in plugins::configured(cfg, &loaded.base_dir) {
            if let Err(e) = plugin.check(&self.host).await {
                out.push(format!(
                    "{}: error: {} `{}`: {e}",
                    loaded.display_name(),
                    plugin.kind(),
                    plugin.name()
                ));
            }
        }
        out
    }

    /// Runs the engine until `shutdown` completes, then shuts down gracefully.
    ///
    /// Each message on `reloads` (the CLI sends one per SIGHUP) reloads every plugin: files
    /// are read again, and quarantined or backing-off instances get a fresh start. Plugin
    /// files are also watched and reloaded when their content changes. A closed `reloads`
    /// channel just means no operator reloads.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send,
        reloads: mpsc::Receiver<()>,
    ) -> anyhow::Result<()> {
        self.open_database()?;
        run(self, shutdown, reloads).await
    }
}

/// The body of [`Engine::run`].
async fn run(
    engine: Engine,
    shutdown: impl std::future::Future<Output = ()> + Send,
    mut reloads: mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let Engine {
        loaded,
        store,
        host,
        dispatcher,
        rules,
        problems,
        database,
    } = engine;
    let cfg = &loaded.config;
    let data_dir = loaded.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    // History: from here on every sample the store accepts reaches the database within
    // `store.flush_interval`; what the last run flushed is replayed in the background.
    let persister = match &database {
        Some(db) => Some(
            Disk::start(db.clone(), durable::disk_config(&cfg.store), &store)
                .context("cannot start writing history to the durable store")?,
        ),
        None => None,
    };
    let dispatcher = match &database {
        Some(db) => {
            let outbox = Arc::new(durable::DbOutbox::new(db.clone()));
            durable::import_old_spool(&data_dir, outbox.as_ref());
            dispatcher.with_outbox(outbox)
        }
        None => {
            warn!("the durable store is disabled (`store.enabled: false`): history beyond the in-memory window, alert state and undelivered notifications are not kept across restarts");
            dispatcher
        }
    }
    .start();
    for d in &problems {
        error!("{d}");
    }
    let rules_dir = loaded.rules_dir();
    let changes = match &rules_dir {
        Some(dir) => match RuleWatcher::start(dir) {
            Ok((watcher, rx)) => Some((watcher, rx)),
            Err(e) => {
                warn!(dir = %dir.display(), "rule files will not be reloaded on change: {e}");
                None
            }
        },
        None => None,
    };

    for (rule, file) in rules.replaced_defaults() {
        info!("rule {rule} from {} replaces the default", file.display());
    }
    info!(
        "telltale {} running {}: {} collector(s), {} analyzer(s), {} rule(s) from {}, notifiers: {}; data in {}",
        env!("CARGO_PKG_VERSION"),
        loaded.display_name(),
        cfg.collectors.len(),
        cfg.analyzers.len(),
        rules.rules().len(),
        match (&rules_dir, cfg.rules.defaults) {
            (Some(d), true) => format!("{} and the built-in defaults", d.display()),
            (Some(d), false) => d.display().to_string(),
            (None, true) => "the built-in defaults".into(),
            (None, false) => "nowhere (no `rules.dir`, `rules.defaults: false`)".into(),
        },
        if cfg.notifiers.is_empty() {
            "none".to_string()
        } else {
            cfg.notifiers
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
        data_dir.display(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let (reload_tx, _) = broadcast::channel::<Reload>(RELOAD_CHANNEL);
    let mut tasks = JoinSet::new();
    let mut plugin_files = BTreeSet::new();
    for plugin in plugins::configured(cfg, &loaded.base_dir) {
        plugin_files.extend(plugin_file(plugin.spec()));
        tasks.spawn(plugin.run(
            host.clone(),
            store.clone(),
            reload_tx.subscribe(),
            stop_rx.clone(),
        ));
    }
    // Held until shutdown: dropping it stops the watch.
    let _plugin_watcher = PluginWatcher::start(&plugin_files, reload_tx.clone());
    {
        let reload_tx = reload_tx.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    r = reloads.recv() => match r {
                        Some(()) => {
                            info!("reload requested (SIGHUP): reloading every plugin; quarantined ones get a fresh start");
                            let _ = reload_tx.send(Reload::Operator);
                        }
                        // No operator reloads: wait for shutdown only.
                        None => {
                            let _ = stop.changed().await;
                            break;
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
        });
    }
    let (_watcher, change_rx) = match changes {
        Some((w, rx)) => (Some(w), Some(rx)),
        None => (None, None),
    };
    // Scaling rules' proposals: decided, recorded, notified and applied in a task of their own.
    let (scaling, scaling_stage) = scaling::stage(cfg, database.clone());
    tasks.spawn(scaling_stage.run(stop_rx.clone()));
    let alerting = alerting::Alerting::open(cfg, database.clone(), now_ms())?;
    tasks.spawn(rule_task(
        rules,
        change_rx,
        scaling,
        alerting,
        dispatcher.clone(),
        store.clone(),
        durable::AlertPersistence::new(database.clone()),
        cfg.engine.evaluation_interval.get(),
        stop_rx.clone(),
    ));

    // Pruning and the store's own metrics, on the evaluation interval as before, in the
    // store's task: the rule task only evaluates.
    tasks.spawn(
        store
            .clone()
            .maintain(cfg.engine.evaluation_interval.get(), stop_rx.clone()),
    );
    tasks.spawn(status_task(store.clone(), stop_rx.clone()));
    if let Some(c) = &cfg.ingest {
        let eval = cfg.engine.evaluation_interval.get();
        let ingest = telltale_ingest::Ingest::bind(c, eval, store.clone())
            .await
            .context("cannot start the push ingest listeners")?;
        tasks.spawn(ingest.run(stop_rx.clone()));
    }

    shutdown.await;
    info!("shutting down: stopping collection and evaluation");
    let _ = stop_tx.send(true);
    // A task in the middle of a plugin call finishes it (bounded by the plugin deadline).
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        warn!("some tasks did not stop within 30s; abandoning them");
        tasks.abort_all();
    }
    let grace = cfg.engine.shutdown_grace.get();
    info!(
        "delivering queued notifications (up to {})",
        humantime::format_duration(grace)
    );
    let report = dispatcher.shutdown(grace).await;
    let delivered: u64 = report.stats.iter().map(|s| s.delivered).sum();
    let failed: u64 = report.stats.iter().map(|s| s.failed).sum();
    if let Some(p) = persister {
        // The last flush and checkpoint: the next start replays nothing.
        let _ = tokio::task::spawn_blocking(move || p.stop()).await;
    }
    info!(
        "stopped: {delivered} notification(s) delivered, {failed} failed, {} left in the outbox for the next start, {} lost",
        report.kept, report.lost
    );
    Ok(())
}

/// The watched form of a plugin's file, for file plugins whose directory exists.
fn plugin_file(spec: &PluginSpec) -> Option<PathBuf> {
    match &spec.source {
        PluginSource::File(path) => {
            let key = watch_key(path);
            if key.is_none() {
                warn!(
                    "plugin `{}`: the directory of {} does not exist; the file will not be watched",
                    spec.instance,
                    path.display()
                );
            }
            key
        }
        PluginSource::Standard(_) => None,
    }
}

pub(crate) fn ticker(period: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(period);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// Evaluates every rule each tick, feeds the alert state machine and the dispatcher, and
/// applies rule-file changes as they arrive. Alert state starts from what `saved` restores
/// and is saved there whenever it changes.
// Each argument is one stage it feeds or one thing it owns; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn rule_task(
    mut rules: RuleSet,
    mut changes: Option<mpsc::Receiver<PathBuf>>,
    mut scaling: scaling::ScalingHandle,
    mut alerting: alerting::Alerting,
    dispatcher: DispatcherHandle,
    store: Arc<SeriesStore>,
    mut saved: durable::AlertPersistence,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut alerts = AlertManager::new();
    {
        let loaded = rules.rules();
        let names: Vec<&str> = loaded.iter().map(|m| m.name.as_str()).collect();
        let now = now_ms();
        let resolved = saved.restore(&mut alerts, &names, now);
        alerting.route(resolved, &dispatcher, now);
        // The two states are saved apart: make the router agree with the alerts.
        let firing = alerts
            .snapshot()
            .into_iter()
            .filter(|a| a.announced == Some(telltale_model::AlertStatus::Firing))
            .map(|a| a.alert)
            .collect();
        alerting.reconcile(firing, &dispatcher, now);
        // A silence or an ack left while the engine was stopped applies before the first
        // evaluation can announce what it was meant to mute.
        tokio::task::block_in_place(|| alerting.apply_commands(&dispatcher, now));
    }
    let mut tick = ticker(period);
    // Group waits, escalation levels and snoozes end between evaluations, and operators'
    // commands should not wait for the next one: the alert manager looks every second.
    let mut control = ticker(ALERTING_PERIOD);
    let mut first = true;
    loop {
        tokio::select! {
            _ = control.tick() => {
                let now = now_ms();
                tokio::task::block_in_place(|| {
                    alerting.apply_commands(&dispatcher, now);
                    alerting.tick(&dispatcher, now);
                    alerting.save_if_changed(now);
                });
                continue;
            }
            _ = tick.tick() => {
                let now = now_ms();
                let started = Instant::now();
                // Rhai is synchronous; keep the runtime's other tasks moving meanwhile.
                let results = tokio::task::block_in_place(|| rules.evaluate(now));
                scaling.offer(&results, now);
                let took = started.elapsed();
                let (notifications, errors) = apply_results(&mut alerts, results, now);
                alerting.route(notifications, &dispatcher, now);
                alerting.tick(&dispatcher, now);
                let active = alerts.active();
                let firing = active.iter().filter(|a| a.firing_since_ms > 0).count();
                let count = rules.rules().len();
                if first {
                    info!("first evaluation: {count} rule(s) in {:.2} ms, {} alert(s) active", took.as_secs_f64() * 1e3, active.len());
                    first = false;
                }
                store.ingest([
                    Sample::new(self_metrics::RULES_LOADED.name, &[], count as f64, now),
                    Sample::new(self_metrics::RULE_EVALUATION_DURATION.name, &[], took.as_secs_f64(), now),
                    Sample::new(self_metrics::RULE_ERRORS.name, &[], errors as f64, now),
                    Sample::new(self_metrics::ALERTS.name, &[("state", "firing")], firing as f64, now),
                    Sample::new(self_metrics::ALERTS.name, &[("state", "pending")], (active.len() - firing) as f64, now),
                ]);
            }
            n = scaling.notice() => {
                // A scaling decision: routed like an alert, but it keeps no state.
                tokio::task::block_in_place(|| alerting.route_event(n, &dispatcher, now_ms()));
                continue;
            }
            Some(path) = recv(&mut changes) => {
                match rules.apply_change(&path) {
                    ReloadOutcome::Added(meta) => info!(file = %path.display(), "rule `{}` loaded", meta.name),
                    ReloadOutcome::Updated { rule, renamed_from } => {
                        info!(file = %path.display(), "rule `{}` reloaded", rule.name);
                        // The old name's alerts would otherwise stay firing forever.
                        if let Some(old) = renamed_from {
                            let now = now_ms();
                            let resolved = alerts.rule_removed(&old, now);
                            alerting.route(resolved, &dispatcher, now);
                        }
                    }
                    ReloadOutcome::Removed(name) => {
                        info!(file = %path.display(), "rule `{name}` removed");
                        let now = now_ms();
                        let resolved = alerts.rule_removed(&name, now);
                        alerting.route(resolved, &dispatcher, now);
                    }
                    ReloadOutcome::Unchanged => {}
                    ReloadOutcome::Failed { diagnostics, kept_previous } => {
                        let text = telltale_diagnostics::Diagnostics(diagnostics);
                        if kept_previous {
                            error!("{text}\n  = note: the previous version of this rule stays active");
                        } else {
                            error!("{text}");
                        }
                    }
                }
            }
            _ = stop.changed() => break,
        }
        // Small writes, and only when an alert appeared, fired, resolved or went, or the
        // alert manager's state changed.
        tokio::task::block_in_place(|| {
            saved.save_if_changed(&alerts);
            alerting.save_if_changed(now_ms());
        });
    }
    // What changed in the last few seconds (saves are spaced out) is kept for the next start.
    tokio::task::block_in_place(|| alerting.save_now(now_ms()));
}

/// Feeds one tick of rule results to the alert state machine. A failed rule's alerts stay
/// as they are (a broken rule is not evidence that the problem went away); the rule itself
/// was logged by `RuleSet::evaluate`, without repeats, and raises an `error` alert once it
/// has failed for its `error_after`. Returns the notifications to send and how many rules
/// failed.
pub(crate) fn apply_results(
    alerts: &mut AlertManager,
    results: Vec<RuleResult>,
    now: TimestampMs,
) -> (Vec<Notification>, usize) {
    let mut out = Vec::new();
    let mut errors = 0;
    for r in results {
        match r.outcome {
            Ok(candidates) => {
                out.extend(alerts.process(&r.meta, &candidates, now));
                if r.meta.policy.nodata.is_some() {
                    out.extend(alerts.nodata(&r.meta, &r.silent, now));
                }
            }
            Err(e) => {
                errors += 1;
                out.extend(alerts.rule_failed(&r.meta, &e.message, now));
            }
        }
    }
    (out, errors)
}

/// How often the alert manager runs its timers and reads operators' commands.
const ALERTING_PERIOD: Duration = Duration::from_secs(1);

/// When the first status line is printed, and how often after that.
const STATUS_FIRST: Duration = Duration::from_secs(15);
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Prints a one-line summary now and then, so an operator watching the console sees that
/// collection and evaluation are alive. It reads only the self-metrics in the store.
async fn status_task(store: Arc<SeriesStore>, mut stop: watch::Receiver<bool>) {
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_FIRST, STATUS_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => info!("status: {}", status_line(&store, now_ms())),
            _ = stop.changed() => break,
        }
    }
}

/// `312 series; collector system: 37 samples in 3.1 ms; rules: 5 in 0.2 ms; alerts: 0 firing, 0 pending`
fn status_line(store: &SeriesStore, now: i64) -> String {
    let latest = |name: &str, labels: &[(&str, &str)]| -> Vec<(Labels, f64)> {
        let m: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        store
            .latest(name, &m, now)
            .into_iter()
            .map(|(l, p)| (l, p.value))
            .collect()
    };
    let one = |name: &str, labels: &[(&str, &str)]| {
        latest(name, labels).first().map(|x| x.1).unwrap_or(0.0)
    };
    let mut parts = vec![format!("{} series", store.series_count())];
    for (labels, samples) in latest(self_metrics::PLUGIN_SAMPLES.name, &[]) {
        let (Some(plugin), Some(kind)) = (labels.get("plugin"), labels.get("kind")) else {
            continue;
        };
        let selector = [("plugin", plugin.as_str()), ("kind", kind.as_str())];
        let up = one(self_metrics::PLUGIN_UP.name, &selector) > 0.0;
        let ms = one(self_metrics::PLUGIN_CALL_DURATION.name, &selector) * 1e3;
        let state = |s: &str| {
            one(
                self_metrics::PLUGIN_STATE.name,
                &[("plugin", plugin), ("kind", kind), ("state", s)],
            ) > 0.0
        };
        let errors = one(
            self_metrics::PLUGIN_CALLS.name,
            &[("plugin", plugin), ("kind", kind), ("outcome", "error")],
        );
        parts.push(if up {
            format!("{kind} {plugin}: {samples} samples in {ms:.1} ms")
        } else if state("quarantined") {
            format!("{kind} {plugin}: QUARANTINED ({errors} errors)")
        } else if state("backing_off") {
            format!("{kind} {plugin}: BACKING OFF ({errors} errors)")
        } else if errors == 0.0 {
            // Loaded but not called yet (an analyzer waits for its inputs' first points).
            format!("{kind} {plugin}: no calls yet")
        } else {
            format!("{kind} {plugin}: FAILING ({errors} errors)")
        });
    }
    parts.push(format!(
        "rules: {} in {:.2} ms ({} failing)",
        one(self_metrics::RULES_LOADED.name, &[]),
        one(self_metrics::RULE_EVALUATION_DURATION.name, &[]) * 1e3,
        one(self_metrics::RULE_ERRORS.name, &[]),
    ));
    parts.push(format!(
        "alerts: {} firing, {} pending",
        one(self_metrics::ALERTS.name, &[("state", "firing")]),
        one(self_metrics::ALERTS.name, &[("state", "pending")]),
    ));
    parts.join("; ")
}

/// Receives from an optional channel; pends forever when there is none.
async fn recv(rx: &mut Option<mpsc::Receiver<PathBuf>>) -> Option<PathBuf> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
