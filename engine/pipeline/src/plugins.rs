//! The plugin tasks: one per configured plugin instance, of every world, each calling its
//! plugin when due under a [`Supervisor`], reloading it when its file changes or the
//! operator asks, and publishing what happened as `telltale_plugin_*` self-metrics.
//!
//! One task ([`plugin_task`]) and one [`Slot`] serve every world. What differs is a
//! [`Role`]: when and with what the plugin is called, and where its output goes
//! ([`Collect`]: on its interval, samples to the store; [`Analyze`]: on its interval with
//! the windows of its inputs, derived samples and events to the store, see
//! [`Analyze::deliver`]). [`configured`] is the one place that says which config section
//! holds which world's entries; `check` loads each entry once, `run` spawns its task.
//!
//! Per instance, every time it is due:
//!
//! 1. If supervision forbids a call now (backing off, quarantined), the call is skipped.
//! 2. Otherwise the instance is loaded (first time, or after a failed load) or, when the
//!    last failure discarded it, instantiated afresh (`restart`), then called.
//! 3. A failure that discards the instance (crash, deadline, limit, failed load/restart)
//!    goes to the supervisor: backoff, then quarantine. An error the plugin reports itself
//!    leaves it running and is logged without repetition ([`FailureLog`]).
//! 4. The self-metrics are written to the store, whatever happened.
//!
//! A reload loads the plugin again (through the compile cache) *beside* the running one and
//! swaps only when that succeeded, so a broken new file never replaces a working version.
//! Data flows one way: the tasks only write to the store and the log.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tokio::time::Interval;
use tracing::{debug, error, info, warn};

use telltale_config::{AnalyzerConfig, CollectorConfig, Config, PluginEntry, SupervisionConfig};
use telltale_model::{Event, Labels, Sample, SeriesKey, duration_ms, now_ms, self_metrics};
use telltale_plugin_host::{
    Analyzer, Collector, PluginError, PluginHost, PluginInstance, PluginKind, PluginSource,
    PluginSpec, World,
};
use telltale_store::{IngestReport, SeriesRead, SeriesStore, SourceLimits, StoreWriter};

use super::reload::{Reload, watch_key};
use super::supervise::{FailureLog, PluginState, Policy, Supervisor, Transition};
use super::ticker;

/// Whether a call's error means the instance is gone (or must go): a crash, a missed
/// deadline, a broken limit, invalid output, or a failed re-instantiation (`!live`).
fn discards_instance(e: &PluginError, live: bool) -> bool {
    e.stopped_instance() || matches!(e, PluginError::InvalidOutput { .. }) || !live
}

/// Counters one plugin task keeps about itself, published as `telltale_plugin_*` series.
#[derive(Debug, Default)]
struct Stats {
    ok: u64,
    errors: u64,
    restarts: u64,
    reloads_ok: u64,
    reloads_failed: u64,
    last_duration: Duration,
    duration_sum: Duration,
    duration_count: u64,
    emitted: usize,
    up: bool,
    /// Samples the store refused: beyond `engine.max_series`, `engine.max_series_bytes`,
    /// the plugin's own `limits.max_series`/`max_series_bytes`, or older than their series'
    /// newest point.
    dropped_series_limit: u64,
    dropped_bytes_limit: u64,
    dropped_source_limit: u64,
    dropped_out_of_order: u64,
    /// Whether the previous call's samples were refused for want of room: the warning is
    /// logged when that starts, not on every call while it lasts.
    dropping_for_room: bool,
    /// The newest failure: its [`PluginError::reason`], message and time.
    last_error: Option<LastError>,
    /// The last-error series published before the newest failure replaced it: removed
    /// from the store at the next publish so that only the newest one is there.
    replaced_error: Option<SeriesKey>,
}

/// The newest failure of a plugin instance, published as
/// `telltale_plugin_last_error_timestamp_seconds{reason,error}`.
#[derive(Debug, Clone)]
struct LastError {
    reason: &'static str,
    /// The message, cut to [`MAX_ERROR_LABEL`] characters: it becomes a label value.
    message: String,
    at_ms: i64,
}

/// The longest error message kept in the `error` label; the log has the whole message.
const MAX_ERROR_LABEL: usize = 240;

const LAST_ERROR_METRIC: &str = self_metrics::PLUGIN_LAST_ERROR.name;

/// One supervised plugin instance: the loaded plugin (if any), its supervisor and counters.
pub(crate) struct Slot<W: World> {
    name: String,
    host: PluginHost,
    spec: PluginSpec,
    /// The plugin file's [`watch_key`]; `None` for standard plugins.
    file: Option<PathBuf>,
    instance: Option<PluginInstance<W>>,
    /// The last failure discarded the instance: instantiate afresh before the next call.
    discarded: bool,
    supervisor: Supervisor,
    guest_errors: FailureLog,
    stats: Stats,
}

impl<W: World> Slot<W> {
    /// A slot that loads its plugin on the first permitted tick.
    pub(crate) fn new(host: PluginHost, spec: PluginSpec, supervision: &SupervisionConfig) -> Self {
        let file = match &spec.source {
            PluginSource::File(path) => watch_key(path).or_else(|| Some(path.clone())),
            PluginSource::Standard(_) => None,
        };
        let name = spec.instance.clone();
        Slot {
            guest_errors: FailureLog::new(&format!("{} `{name}`", W::KIND)),
            name,
            host,
            spec,
            file,
            instance: None,
            discarded: false,
            supervisor: Supervisor::new(Policy::from(supervision)),
            stats: Stats::default(),
        }
    }

    /// A live instance to call, if supervision allows a call at `now`: loads the plugin
    /// or instantiates it afresh first when needed. `None` when the tick is skipped or
    /// that failed (the failure is already recorded).
    pub(crate) async fn ready(&mut self, now: Instant) -> Option<&mut PluginInstance<W>> {
        if !self.supervisor.may_call(now) {
            return None;
        }
        match &mut self.instance {
            None => match self.host.load::<W>(self.spec.clone()).await {
                Ok(i) => {
                    self.instance = Some(i);
                    self.discarded = false;
                }
                Err(e) => {
                    self.stats.errors += 1;
                    self.stats.up = false;
                    self.record_failure(&e);
                    return None;
                }
            },
            Some(i) if self.discarded || !i.is_live() => {
                self.stats.restarts += 1;
                if let Err(e) = i.restart().await {
                    self.stats.errors += 1;
                    self.stats.up = false;
                    self.record_failure(&e);
                    return None;
                }
                self.discarded = false;
            }
            Some(_) => {}
        }
        self.instance.as_mut()
    }

    /// Records a successful call that took `took` and returned `emitted` items.
    pub(crate) fn succeeded(&mut self, took: Duration, emitted: usize) {
        self.count_call(took);
        self.stats.ok += 1;
        self.stats.emitted = emitted;
        self.stats.up = true;
        self.guest_errors.success();
        if let Some(t) = self.supervisor.success() {
            self.log_transition(&t, None);
        }
    }

    /// Records a failed call; `live` is whether the instance is still live after it.
    pub(crate) fn failed(&mut self, e: &PluginError, took: Duration, live: bool) {
        self.count_call(took);
        self.stats.errors += 1;
        self.note_error(e);
        self.stats.emitted = 0;
        self.stats.up = false;
        if discards_instance(e, live) {
            self.record_failure(e);
        } else {
            // The plugin is healthy and said why it could not deliver: call it as usual.
            self.guest_errors.failure(&e.to_string());
        }
    }

    /// Makes `e` the published last error. The previous one's series (another `error`
    /// label) is queued for removal, unless it was replaced before it was ever published.
    fn note_error(&mut self, e: &PluginError) {
        let last = LastError {
            reason: e.reason(),
            message: e.to_string().chars().take(MAX_ERROR_LABEL).collect(),
            at_ms: now_ms(),
        };
        if let Some(previous) = &self.stats.last_error
            && (previous.reason, &previous.message) != (last.reason, &last.message)
            && self.stats.replaced_error.is_none()
        {
            self.stats.replaced_error = Some(SeriesKey {
                name: LAST_ERROR_METRIC.into(),
                labels: self.last_error_labels(previous),
            });
        }
        self.stats.last_error = Some(last);
    }

    fn last_error_labels(&self, e: &LastError) -> Labels {
        Labels::from([
            ("plugin".to_string(), self.name.clone()),
            ("kind".to_string(), W::KIND.to_string()),
            ("reason".to_string(), e.reason.to_string()),
            ("error".to_string(), e.message.clone()),
        ])
    }

    /// Publishes this instance's self-metrics into `store` as of `ts`, first removing the
    /// series of a last error that a newer one replaced.
    pub(crate) fn publish(&mut self, store: &SeriesStore, ts: i64) {
        if let Some(key) = self.stats.replaced_error.take() {
            store.remove_series(std::slice::from_ref(&key));
        }
        store.ingest(self.samples(ts));
    }

    fn count_call(&mut self, took: Duration) {
        self.stats.last_duration = took;
        self.stats.duration_sum += took;
        self.stats.duration_count += 1;
    }

    fn record_failure(&mut self, e: &PluginError) {
        self.discarded = true;
        let message = e.to_string();
        let t = self.supervisor.failure(Instant::now(), &message);
        self.log_transition(&t, Some(&message));
    }

    /// One line per state change, naming the plugin and the reason.
    fn log_transition(&self, t: &Transition, reason: Option<&str>) {
        let (kind, name) = (W::KIND, &self.name);
        let reason = reason.or(self.supervisor.last_error()).unwrap_or("");
        match t {
            Transition::BackingOff {
                from,
                wait,
                failures,
            } => warn!(
                "{kind} `{name}`: {from} -> backing_off (next try in {}; {failures} consecutive failure(s)): {reason}",
                humantime::format_duration(*wait)
            ),
            Transition::Quarantined { from, failures } => error!(
                "{kind} `{name}`: {from} -> quarantined after {failures} consecutive failures: {reason}; \
                 it is not called again until {} or telltale gets SIGHUP",
                match &self.file {
                    Some(f) => format!("{} changes", f.display()),
                    None => "it is reloaded".to_string(),
                }
            ),
            Transition::Recovered { failures } => info!(
                "{kind} `{name}`: backing_off -> running (recovered after {failures} consecutive failure(s))"
            ),
            Transition::Released { from } => {
                info!("{kind} `{name}`: {from} -> running (given a fresh start by the reload)")
            }
        }
    }

    /// Handles a reload request: loads the plugin again beside the current one and swaps
    /// when that worked. A file reload whose content did not change does nothing; an
    /// operator reload always gives the plugin a fresh start.
    pub(crate) async fn reload(&mut self, request: &Reload) {
        let operator = match request {
            Reload::Operator => true,
            Reload::File(path) => {
                if self.file.as_ref() != Some(path) {
                    return;
                }
                false
            }
        };
        self.reload_now(operator).await;
    }

    /// The reload channel lagged: a change of this plugin's file may have been missed.
    pub(crate) async fn recheck_file(&mut self) {
        if self.file.is_some() {
            self.reload_now(false).await;
        }
    }

    async fn reload_now(&mut self, operator: bool) {
        let (kind, name) = (W::KIND, self.name.clone());
        let origin = match &self.spec.source {
            PluginSource::File(p) => p.display().to_string(),
            PluginSource::Standard(n) => format!("<standard>/{n}"),
        };
        if !operator {
            // Only a new content is a new version: editors and `touch` send events too.
            let PluginSource::File(path) = &self.spec.source else {
                return;
            };
            let Ok(bytes) = tokio::fs::read(path).await else {
                // Removed or being replaced: the rename that installs the new file sends
                // its own event; keep what runs.
                return;
            };
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if self
                .instance
                .as_ref()
                .is_some_and(|i| i.source_sha256() == digest)
            {
                return;
            }
        }
        match self.host.load::<W>(self.spec.clone()).await {
            Ok(new) => {
                let changed = self
                    .instance
                    .as_ref()
                    .is_none_or(|old| old.source_sha256() != new.source_sha256());
                let sha = short_hex(&new.source_sha256());
                self.instance = Some(new);
                self.discarded = false;
                self.stats.reloads_ok += 1;
                if changed {
                    info!(
                        "{kind} `{name}`: loaded the new version of {origin} (sha256 {sha}) without restarting"
                    );
                } else {
                    info!("{kind} `{name}`: reloaded {origin} (sha256 {sha}, unchanged)");
                }
                if let Some(t) = self.supervisor.release() {
                    self.log_transition(&t, None);
                }
            }
            Err(e) => {
                self.stats.reloads_failed += 1;
                let keeps = match (&self.instance, self.supervisor.state()) {
                    (None, _) => "there is no previous version to keep",
                    (Some(_), PluginState::Quarantined) if !operator => {
                        "the previous version stays quarantined"
                    }
                    (Some(_), _) => "the previous version keeps running",
                };
                // What happens first: the error may run over several lines.
                error!("{kind} `{name}`: cannot load the new version of {origin} ({keeps}): {e}");
                if operator && let Some(t) = self.supervisor.release() {
                    // The operator asked for a fresh start: the previous version gets it.
                    self.log_transition(&t, None);
                }
            }
        }
    }

    /// Counts what the store refused of this instance's samples, and logs once when it
    /// starts refusing them for want of room (and once when that stops).
    pub(crate) fn stored(&mut self, report: IngestReport) {
        self.stats.dropped_series_limit += report.dropped_series_limit as u64;
        self.stats.dropped_bytes_limit += report.dropped_bytes_limit as u64;
        self.stats.dropped_source_limit += report.dropped_source_limit as u64;
        self.stats.dropped_out_of_order += report.dropped_out_of_order as u64;
        let dropping = report.dropped_for_room() > 0;
        if dropping && !self.stats.dropping_for_room {
            let mut bounds = Vec::new();
            if report.dropped_source_limit > 0 {
                bounds.push("the plugin's limits.max_series / limits.max_series_bytes");
            }
            if report.dropped_series_limit > 0 {
                bounds.push("engine.max_series");
            }
            if report.dropped_bytes_limit > 0 {
                bounds.push("engine.max_series_bytes");
            }
            warn!(
                plugin = %self.name,
                "{} samples of new series dropped: they would exceed {}; counted in \
                 telltale_plugin_samples_dropped_total until they fit (logged again only \
                 after they do)",
                report.dropped_for_room(),
                bounds.join(" and ")
            );
        } else if !dropping && self.stats.dropping_for_room && report.accepted > 0 {
            info!(plugin = %self.name, "new series fit in the store again");
        }
        if dropping || report.accepted > 0 {
            self.stats.dropping_for_room = dropping;
        }
    }

    /// The self-metrics of this instance, as of `ts`.
    pub(crate) fn samples(&self, ts: i64) -> Vec<Sample> {
        let (name, kind) = (self.name.as_str(), W::KIND.as_str());
        let base = [("plugin", name), ("kind", kind)];
        let mut out = Vec::with_capacity(16);
        for (outcome, n) in [("ok", self.stats.ok), ("error", self.stats.errors)] {
            out.push(Sample::new(
                self_metrics::PLUGIN_CALLS.name,
                &[("plugin", name), ("kind", kind), ("outcome", outcome)],
                n as f64,
                ts,
            ));
        }
        for (reason, n) in [
            ("series_limit", self.stats.dropped_series_limit),
            ("bytes_limit", self.stats.dropped_bytes_limit),
            ("source_limit", self.stats.dropped_source_limit),
            ("out_of_order", self.stats.dropped_out_of_order),
        ] {
            out.push(Sample::new(
                self_metrics::PLUGIN_SAMPLES_DROPPED.name,
                &[("plugin", name), ("kind", kind), ("reason", reason)],
                n as f64,
                ts,
            ));
        }
        let current = self.supervisor.state();
        for state in PluginState::ALL {
            out.push(Sample::new(
                self_metrics::PLUGIN_STATE.name,
                &[("plugin", name), ("kind", kind), ("state", state.as_str())],
                if state == current { 1.0 } else { 0.0 },
                ts,
            ));
        }
        for (outcome, n) in [
            ("ok", self.stats.reloads_ok),
            ("error", self.stats.reloads_failed),
        ] {
            out.push(Sample::new(
                self_metrics::PLUGIN_RELOADS.name,
                &[("plugin", name), ("kind", kind), ("outcome", outcome)],
                n as f64,
                ts,
            ));
        }
        for (metric, value) in [
            (
                self_metrics::PLUGIN_CALL_DURATION.name,
                self.stats.last_duration.as_secs_f64(),
            ),
            (
                self_metrics::PLUGIN_CALL_DURATION_SUM.name,
                self.stats.duration_sum.as_secs_f64(),
            ),
            (
                self_metrics::PLUGIN_CALL_DURATION_COUNT.name,
                self.stats.duration_count as f64,
            ),
            (self_metrics::PLUGIN_SAMPLES.name, self.stats.emitted as f64),
            (
                self_metrics::PLUGIN_UP.name,
                if self.stats.up && current == PluginState::Running {
                    1.0
                } else {
                    0.0
                },
            ),
            (
                self_metrics::PLUGIN_RESTARTS.name,
                self.stats.restarts as f64,
            ),
            (
                self_metrics::PLUGIN_CONSECUTIVE_FAILURES.name,
                f64::from(self.supervisor.consecutive_failures()),
            ),
        ] {
            out.push(Sample::new(metric, &base, value, ts));
        }
        if let Some(e) = &self.stats.last_error {
            out.push(Sample {
                name: LAST_ERROR_METRIC.into(),
                labels: self.last_error_labels(e),
                value: e.at_ms as f64 / 1000.0,
                timestamp_ms: ts,
            });
        }
        out
    }
}

fn short_hex(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Receives the next reload request; pends forever once the channel is closed.
async fn next_reload(rx: &mut broadcast::Receiver<Reload>) -> Result<Reload, u64> {
    match rx.recv().await {
        Ok(r) => Ok(r),
        Err(broadcast::error::RecvError::Lagged(n)) => Err(n),
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

/// Applies a reload request (or a lag: re-check the file) to `slot`, then publishes.
async fn handle_reload<W: World>(
    slot: &mut Slot<W>,
    request: Result<Reload, u64>,
    store: &SeriesStore,
) {
    match request {
        Ok(r) => slot.reload(&r).await,
        Err(_lagged) => slot.recheck_file().await,
    }
    slot.publish(store, now_ms());
}

/// The store bounds of a plugin's series, from its `limits`.
fn source_limits(limits: &telltale_config::PluginLimits) -> SourceLimits {
    SourceLimits {
        max_series: limits.max_series,
        max_bytes: usize::try_from(limits.max_series_bytes.0).unwrap_or(usize::MAX),
    }
}

/// What one world's task does that the others do not: when and with what it calls its
/// plugin, and where the output goes. Everything else (loading, supervision, reloads,
/// self-metrics, the store source) is [`plugin_task`]'s, the same for every world.
pub(crate) trait Role: Send + 'static {
    /// The plugin world it runs.
    type World: World;
    /// Waits until the plugin is due again. Must be cancel-safe: the task waits for
    /// reloads and shutdown at the same time.
    fn due(&mut self) -> impl Future<Output = ()> + Send;
    /// What to call it with now, read through the store's read trait; `None` skips this
    /// call (self-metrics are still published).
    fn input(&mut self, store: &dyn SeriesRead) -> Option<<Self::World as World>::Input>;
    /// Hands a successful call's output on, through `out`; returns how many items it
    /// emitted (`telltale_plugin_samples`). `took` is how long the call ran.
    fn deliver(
        &mut self,
        output: <Self::World as World>::Output,
        out: &mut Delivery<'_, Self::World>,
        took: Duration,
    ) -> usize;
}

/// Where a plugin task's output goes: the store, through the plugin's own writer, with
/// what the store refuses counted in the plugin's self-metrics.
pub(crate) struct Delivery<'a, W: World> {
    writer: &'a StoreWriter,
    slot: &'a mut Slot<W>,
}

impl<W: World> Delivery<'_, W> {
    /// The instance's configured name, for log lines.
    pub(crate) fn plugin(&self) -> &str {
        &self.slot.name
    }

    /// The plugin's writer (source `KIND:NAME`), for output other than samples.
    pub(crate) fn writer(&self) -> &StoreWriter {
        self.writer
    }

    /// Writes samples to the store, accounted to this plugin (`collector:NAME`); what the
    /// store refuses is counted and, when it starts refusing for want of room, logged.
    pub(crate) fn samples(&mut self, samples: Vec<Sample>) {
        let report = self.writer.ingest(samples);
        self.slot.stored(report);
    }
}

/// A schedule of "every `period`": due at once, then each period after the last call
/// (missed ticks are delayed, not bunched). The interval is made at the first wait, inside
/// the task, so that building the engine (`check` too) starts no timer.
struct Every {
    period: Duration,
    interval: Option<Interval>,
}

impl Every {
    fn new(period: Duration) -> Every {
        Every {
            period,
            interval: None,
        }
    }

    async fn due(&mut self) {
        let period = self.period;
        self.interval
            .get_or_insert_with(|| ticker(period))
            .tick()
            .await;
    }
}

/// A collector: called on its interval; its samples go to the store.
pub(crate) struct Collect {
    every: Every,
    /// Whether the first successful collection is still to be logged.
    first: bool,
}

impl Collect {
    pub(crate) fn new(cfg: &CollectorConfig) -> Collect {
        Collect {
            every: Every::new(cfg.interval.get()),
            first: true,
        }
    }
}

impl Role for Collect {
    type World = Collector;

    fn due(&mut self) -> impl Future<Output = ()> + Send {
        self.every.due()
    }

    fn input(&mut self, _store: &dyn SeriesRead) -> Option<()> {
        Some(())
    }

    fn deliver(
        &mut self,
        samples: Vec<Sample>,
        out: &mut Delivery<'_, Collector>,
        took: Duration,
    ) -> usize {
        let n = samples.len();
        out.samples(samples);
        if self.first {
            info!(collector = %out.plugin(), "first collection: {n} samples in {:.1} ms", took.as_secs_f64() * 1e3);
            self.first = false;
        }
        n
    }
}

/// An analyzer: called on its interval with the windows of its input series, when they
/// have any points; its derived samples and its events go to the store.
pub(crate) struct Analyze {
    every: Every,
    cfg: AnalyzerConfig,
}

impl Analyze {
    pub(crate) fn new(cfg: &AnalyzerConfig) -> Analyze {
        Analyze {
            every: Every::new(cfg.interval.get()),
            cfg: cfg.clone(),
        }
    }
}

impl Role for Analyze {
    type World = Analyzer;

    fn due(&mut self) -> impl Future<Output = ()> + Send {
        self.every.due()
    }

    fn input(&mut self, store: &dyn SeriesRead) -> Option<Vec<telltale_model::SeriesWindow>> {
        let since = now_ms() - duration_ms(self.cfg.window.get());
        let windows: Vec<_> = self
            .cfg
            .inputs
            .iter()
            .flat_map(|sel| store.window(&sel.name, &sel.labels, since))
            .collect();
        (!windows.is_empty()).then_some(windows)
    }

    /// The analyzer's output: events and derived samples go to the store (rules read the
    /// events with `events()`); events are also logged at debug level.
    fn deliver(
        &mut self,
        (samples, events): (Vec<Sample>, Vec<Event>),
        out: &mut Delivery<'_, Analyzer>,
        _took: Duration,
    ) -> usize {
        for e in &events {
            let event = SeriesKey {
                name: e.kind.as_str().into(),
                labels: e.labels.clone(),
            };
            debug!(analyzer = %out.plugin(), %event, severity = %e.severity, "{}", e.message);
        }
        out.writer().record_events(events);
        let n = samples.len();
        out.samples(samples);
        n
    }
}

/// Runs one plugin instance of any world: calls it whenever its role says it is due,
/// under supervision, hands the output to the role, and reloads it on request. Its
/// samples are accounted in the store to `KIND:NAME` (`collector:system`), bounded by the
/// entry's `limits.max_series` / `max_series_bytes`.
pub(crate) async fn plugin_task<R: Role>(
    host: PluginHost,
    spec: PluginSpec,
    supervision: SupervisionConfig,
    mut role: R,
    store: Arc<SeriesStore>,
    mut reloads: broadcast::Receiver<Reload>,
    mut stop: watch::Receiver<bool>,
) {
    let writer = store.writer(
        &format!("{}:{}", R::World::KIND, spec.instance),
        source_limits(&spec.limits),
        None,
    );
    let mut slot: Slot<R::World> = Slot::new(host, spec, &supervision);
    loop {
        tokio::select! {
            () = role.due() => {}
            r = next_reload(&mut reloads) => {
                handle_reload(&mut slot, r, &store).await;
                continue;
            }
            _ = stop.changed() => break,
        }
        if let Some(input) = role.input(&*store)
            && let Some(inst) = slot.ready(Instant::now()).await
        {
            let started = Instant::now();
            let result = inst.call(input).await;
            let took = started.elapsed();
            let live = inst.is_live();
            match result {
                Ok(output) => {
                    let mut out = Delivery {
                        writer: &writer,
                        slot: &mut slot,
                    };
                    let n = role.deliver(output, &mut out, took);
                    slot.succeeded(took, n);
                }
                Err(e) => slot.failed(&e, took, live),
            }
        }
        slot.publish(&store, now_ms());
    }
}

/// Every plugin instance the configuration names, of every world, collectors first: the
/// one place that says which section of the config holds which world's entries, and which
/// [`Role`] runs them.
pub(crate) fn configured(cfg: &Config, base_dir: &Path) -> Vec<PluginTask> {
    let collectors = cfg
        .collectors
        .iter()
        .map(|c| PluginTask::new(c, base_dir, Collect::new(c)));
    let analyzers = cfg
        .analyzers
        .iter()
        .map(|a| PluginTask::new(a, base_dir, Analyze::new(a)));
    collectors.chain(analyzers).collect()
}

/// One configured plugin instance, whatever its world: `check` loads it once, `run` runs it
/// as its supervised task ([`plugin_task`]).
pub(crate) struct PluginTask {
    spec: PluginSpec,
    supervision: SupervisionConfig,
    /// The role, its world erased: one box per task, not per call.
    role: Box<dyn AnyRole>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A [`Role`] whose world is not known to the caller.
trait AnyRole: Send {
    fn kind(&self) -> PluginKind;
    fn check<'a>(
        &self,
        host: &'a PluginHost,
        spec: PluginSpec,
    ) -> BoxFuture<'a, Result<(), PluginError>>;
    fn run(self: Box<Self>, parts: TaskParts) -> BoxFuture<'static, ()>;
}

/// What [`plugin_task`] takes besides its role.
struct TaskParts {
    host: PluginHost,
    spec: PluginSpec,
    supervision: SupervisionConfig,
    store: Arc<SeriesStore>,
    reloads: broadcast::Receiver<Reload>,
    stop: watch::Receiver<bool>,
}

impl<R: Role> AnyRole for R {
    fn kind(&self) -> PluginKind {
        R::World::KIND
    }

    fn check<'a>(
        &self,
        host: &'a PluginHost,
        spec: PluginSpec,
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move { host.load::<R::World>(spec).await.map(drop) })
    }

    fn run(self: Box<Self>, p: TaskParts) -> BoxFuture<'static, ()> {
        Box::pin(plugin_task(
            p.host,
            p.spec,
            p.supervision,
            *self,
            p.store,
            p.reloads,
            p.stop,
        ))
    }
}

impl PluginTask {
    /// The task of `entry`, run by `role`; relative paths resolve against `base_dir`.
    pub(crate) fn new<R: Role>(entry: &impl PluginEntry, base_dir: &Path, role: R) -> PluginTask {
        PluginTask {
            spec: PluginSpec::new(entry, base_dir),
            supervision: entry.supervision().clone(),
            role: Box::new(role),
        }
    }

    /// Which world it runs.
    pub(crate) fn kind(&self) -> PluginKind {
        self.role.kind()
    }

    /// The instance's configured name.
    pub(crate) fn name(&self) -> &str {
        &self.spec.instance
    }

    /// How its plugin is loaded.
    pub(crate) fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// Loads the plugin once, the way its task will (compile through the cache, check
    /// grants, instantiate, run `init`), and drops it.
    pub(crate) async fn check(&self, host: &PluginHost) -> Result<(), PluginError> {
        self.role.check(host, self.spec.clone()).await
    }

    /// The task, ready to spawn: runs until `stop` changes.
    pub(crate) fn run(
        self,
        host: PluginHost,
        store: Arc<SeriesStore>,
        reloads: broadcast::Receiver<Reload>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.role.run(TaskParts {
            host,
            spec: self.spec,
            supervision: self.supervision,
            store,
            reloads,
            stop,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    use telltale_store::StoreLimits;

    fn test_plugin(name: &str) -> PathBuf {
        PathBuf::from(telltale_standard_plugins::TEST_PLUGINS_DIR).join(format!("{name}.wasm"))
    }

    /// Parsed from YAML like the real config, so new fields with defaults need no edits.
    fn collector(yaml: &str) -> CollectorConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn slot(cfg: &CollectorConfig, base: &Path) -> Slot<Collector> {
        let host = PluginHost::new(None).unwrap();
        Slot::new(host, PluginSpec::new(cfg, base), &cfg.supervision)
    }

    /// One tick as the collector task runs it; `None` when the call was skipped or the
    /// load/restart before it failed.
    async fn tick(slot: &mut Slot<Collector>) -> Option<Result<usize, PluginError>> {
        let inst = slot.ready(Instant::now()).await?;
        let started = Instant::now();
        let result = inst.call(()).await;
        let (took, live) = (started.elapsed(), inst.is_live());
        Some(match result {
            Ok(s) => {
                slot.succeeded(took, s.len());
                Ok(s.len())
            }
            Err(e) => {
                slot.failed(&e, took, live);
                Err(e)
            }
        })
    }

    fn metric(slot: &Slot<Collector>, name: &str, extra: &[(&str, &str)]) -> f64 {
        slot.samples(0)
            .into_iter()
            .find(|s| {
                s.name == name
                    && extra
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("no {name} {extra:?}"))
    }

    fn install(path: &Path, bytes: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_newest_error_is_published_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::copy(test_plugin("hang"), &file).unwrap();
        let cfg = collector(
            "name: p\nplugin: p.wasm\nlimits: { timeout: 100ms }\n\
             supervision: { initial_backoff: 0s }\n",
        );
        let mut slot = slot(&cfg, dir.path());
        let store = SeriesStore::new(StoreLimits::default());
        let errors =
            |store: &SeriesStore| store.latest(LAST_ERROR_METRIC, &Labels::new(), now_ms());
        assert!(matches!(
            tick(&mut slot).await,
            Some(Err(PluginError::Timeout { .. }))
        ));
        slot.publish(&store, now_ms());
        let first = errors(&store);
        assert_eq!(first.len(), 1, "{first:?}");
        let (labels, point) = &first[0];
        assert_eq!(labels.get("reason").map(String::as_str), Some("timeout"));
        assert!(labels["error"].contains("deadline"), "{labels:?}");
        assert_eq!(labels.get("plugin").map(String::as_str), Some("p"));
        let age_s = now_ms() as f64 / 1000.0 - point.value;
        assert!(
            (0.0..60.0).contains(&age_s),
            "the value is the failure time: {age_s}"
        );

        // A different failure replaces it: one series, the newest reason.
        install(&file, &std::fs::read(test_plugin("panic")).unwrap());
        slot.reload(&Reload::File(watch_key(&file).unwrap())).await;
        assert!(matches!(
            tick(&mut slot).await,
            Some(Err(PluginError::Trap { .. }))
        ));
        slot.publish(&store, now_ms());
        let now = errors(&store);
        assert_eq!(now.len(), 1, "the replaced error is removed: {now:?}");
        assert_eq!(now[0].0.get("reason").map(String::as_str), Some("trap"));
        assert!(now[0].0["error"].contains("gave up"), "{:?}", now[0].0);
        assert!(now[0].0["error"].chars().count() <= MAX_ERROR_LABEL);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hung_plugin_is_quarantined_then_a_new_file_is_swapped_in_and_garbage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.wasm");
        std::fs::copy(test_plugin("hang"), &file).unwrap();
        let cfg = collector(
            "name: p\nplugin: p.wasm\nlimits: { timeout: 100ms }\n\
             supervision: { initial_backoff: 0s, quarantine_after: 2 }\n",
        );
        let mut slot = slot(&cfg, dir.path());
        let key = watch_key(&file).unwrap();

        // Load + call: the deadline discards it; no wait (0s backoff), one more chance.
        assert!(matches!(
            tick(&mut slot).await,
            Some(Err(PluginError::Timeout { .. }))
        ));
        assert_eq!(slot.supervisor.state(), PluginState::BackingOff);
        // Restarted (a fresh instance), fails again: quarantined.
        assert!(matches!(
            tick(&mut slot).await,
            Some(Err(PluginError::Timeout { .. }))
        ));
        assert_eq!(slot.supervisor.state(), PluginState::Quarantined);
        assert_eq!(slot.stats.restarts, 1);
        // Quarantined: not called at all.
        assert!(tick(&mut slot).await.is_none());
        assert_eq!(
            metric(&slot, "telltale_plugin_state", &[("state", "quarantined")]),
            1.0
        );
        assert_eq!(
            metric(&slot, "telltale_plugin_state", &[("state", "running")]),
            0.0
        );
        assert_eq!(
            metric(&slot, "telltale_plugin_consecutive_failures", &[]),
            2.0
        );
        assert_eq!(
            metric(
                &slot,
                "telltale_plugin_calls_total",
                &[("outcome", "error")]
            ),
            2.0
        );
        assert_eq!(
            metric(&slot, "telltale_plugin_call_duration_seconds_count", &[]),
            2.0
        );
        assert!(metric(&slot, "telltale_plugin_call_duration_seconds_sum", &[]) >= 0.2);

        // The same bytes again (a touch) or another file: no fresh chance.
        install(&file, &std::fs::read(test_plugin("hang")).unwrap());
        slot.reload(&Reload::File(key.clone())).await;
        slot.reload(&Reload::File(dir.path().join("other.wasm")))
            .await;
        assert_eq!(slot.supervisor.state(), PluginState::Quarantined);
        assert_eq!(slot.stats.reloads_ok, 0);

        // A new version: swapped in, released, collecting.
        install(&file, &std::fs::read(test_plugin("counter")).unwrap());
        slot.reload(&Reload::File(key.clone())).await;
        assert_eq!(slot.supervisor.state(), PluginState::Running);
        assert_eq!(slot.stats.reloads_ok, 1);
        assert!(matches!(tick(&mut slot).await, Some(Ok(1))));
        assert_eq!(metric(&slot, "telltale_plugin_up", &[]), 1.0);

        // What the store refuses is counted by reason.
        slot.stored(IngestReport {
            accepted: 1,
            dropped_series_limit: 2,
            dropped_out_of_order: 3,
            ..IngestReport::default()
        });
        let dropped = |reason| {
            metric(
                &slot,
                "telltale_plugin_samples_dropped_total",
                &[("reason", reason)],
            )
        };
        assert_eq!(
            (dropped("series_limit"), dropped("out_of_order")),
            (2.0, 3.0)
        );

        // Garbage: refused, the counter keeps collecting (its count goes on: same instance).
        install(&file, b"not wasm");
        slot.reload(&Reload::File(key)).await;
        assert_eq!(slot.stats.reloads_failed, 1);
        assert!(matches!(tick(&mut slot).await, Some(Ok(1))));
        assert_eq!(slot.supervisor.state(), PluginState::Running);
        assert_eq!(
            metric(
                &slot,
                "telltale_plugin_reloads_total",
                &[("outcome", "error")]
            ),
            1.0
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_an_operator_reload_releases_a_standard_plugin() {
        // The system plugin without its grant is refused at every load.
        let cfg = collector(
            "name: sys\nplugin: system\nsupervision: { initial_backoff: 0s, quarantine_after: 1 }\n",
        );
        let mut slot = slot(&cfg, Path::new("."));
        assert!(tick(&mut slot).await.is_none());
        assert_eq!(slot.supervisor.state(), PluginState::Quarantined);
        assert!(
            slot.supervisor
                .last_error()
                .is_some_and(|e| e.contains("grants"))
        );
        // File events never concern a standard plugin.
        slot.reload(&Reload::File(PathBuf::from("/system"))).await;
        slot.recheck_file().await;
        assert_eq!(slot.supervisor.state(), PluginState::Quarantined);
        // SIGHUP: the load still fails, but the operator asked for a fresh start.
        slot.reload(&Reload::Operator).await;
        assert_eq!(slot.supervisor.state(), PluginState::Running);
        assert_eq!(slot.stats.reloads_failed, 1);
        assert!(tick(&mut slot).await.is_none());
        assert_eq!(slot.supervisor.state(), PluginState::Quarantined);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_collector_of_huge_label_sets_is_bounded_by_bytes() {
        // 100 new series a call, each with 64 labels of 1 KiB: within every per-call limit,
        // but ~290 KB per series in memory before the byte bounds.
        let dir = tempfile::tempdir().unwrap();
        let cfg = collector(&format!(
            "name: churn\nplugin: {}\ninterval: 50ms\n\
             limits: {{ max_series_bytes: 8MiB }}\n\
             config: {{ churn: {{ samples: 100, labels: 64, value_bytes: 1024 }} }}",
            test_plugin("flood").display()
        ));
        let store = Arc::new(SeriesStore::new(StoreLimits::default()));
        let (_reload_tx, reloads) = broadcast::channel(4);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(PluginTask::new(&cfg, dir.path(), Collect::new(&cfg)).run(
            PluginHost::new(None).unwrap(),
            Arc::clone(&store),
            reloads,
            stop,
        ));
        let dropped = || {
            store
                .latest(
                    "telltale_plugin_samples_dropped_total",
                    &[("plugin", "churn"), ("reason", "source_limit")]
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    now_ms(),
                )
                .first()
                .map_or(0.0, |(_, p)| p.value)
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while dropped() == 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(dropped() > 0.0, "nothing refused");
        let series = store.window("flood_churn", &Labels::new(), 0).len();
        let one = 256 + 2 * (11 + 64 * (3 + 1024)) + 64 * 64;
        assert_eq!(series, (8 << 20) / one, "as many as fit in 8 MiB");
        // The collector's series and the engine's own few metrics.
        assert!(
            store.series_bytes() < (8 << 20) + (64 << 10),
            "{}",
            store.series_bytes()
        );
    }
}
