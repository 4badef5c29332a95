//! The collector and analyzer tasks: one per configured plugin instance, each calling its
//! plugin on its interval under a [`Supervisor`], reloading it when its file changes or the
//! operator asks, and publishing what happened as `telltale_plugin_*` self-metrics.
//!
//! Per instance, every tick:
//!
//! 1. If supervision forbids a call now (backing off, quarantined), the tick is skipped.
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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tracing::{error, info, warn};

use telltale_config::{AnalyzerConfig, CollectorConfig, SupervisionConfig};
use telltale_model::{Labels, Sample, SeriesKey, Severity, duration_ms, now_ms};
use telltale_plugin_host::{
    AnalyzerInstance, CollectorInstance, PluginError, PluginHost, PluginSource, PluginSpec,
};
use telltale_store::{IngestReport, SeriesStore, SourceLimits};

use super::reload::{Reload, watch_key};
use super::supervise::{FailureLog, PluginState, Policy, Supervisor, Transition};
use super::ticker;

/// What the tasks need from a loaded plugin instance, whatever its world.
pub(crate) trait Instance: Send + Sized + 'static {
    /// `collector` or `analyzer`.
    const KIND: &'static str;
    /// Loads it (compile through the cache, check, instantiate, `init`).
    fn load(
        host: &PluginHost,
        spec: PluginSpec,
    ) -> impl Future<Output = Result<Self, PluginError>> + Send;
    /// Instantiates afresh from the compiled component and re-runs `init`.
    fn restart(&mut self) -> impl Future<Output = Result<(), PluginError>> + Send;
    /// Whether a healthy instance is live.
    fn is_live(&self) -> bool;
    /// SHA-256 of the component bytes.
    fn sha256(&self) -> [u8; 32];
}

impl Instance for CollectorInstance {
    const KIND: &'static str = "collector";
    fn load(
        host: &PluginHost,
        spec: PluginSpec,
    ) -> impl Future<Output = Result<Self, PluginError>> + Send {
        host.collector(spec)
    }
    fn restart(&mut self) -> impl Future<Output = Result<(), PluginError>> + Send {
        CollectorInstance::restart(self)
    }
    fn is_live(&self) -> bool {
        CollectorInstance::is_live(self)
    }
    fn sha256(&self) -> [u8; 32] {
        self.source_sha256()
    }
}

impl Instance for AnalyzerInstance {
    const KIND: &'static str = "analyzer";
    fn load(
        host: &PluginHost,
        spec: PluginSpec,
    ) -> impl Future<Output = Result<Self, PluginError>> + Send {
        host.analyzer(spec)
    }
    fn restart(&mut self) -> impl Future<Output = Result<(), PluginError>> + Send {
        AnalyzerInstance::restart(self)
    }
    fn is_live(&self) -> bool {
        AnalyzerInstance::is_live(self)
    }
    fn sha256(&self) -> [u8; 32] {
        self.source_sha256()
    }
}

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

const LAST_ERROR_METRIC: &str = "telltale_plugin_last_error_timestamp_seconds";

/// One supervised plugin instance: the loaded plugin (if any), its supervisor and counters.
pub(crate) struct Slot<I: Instance> {
    name: String,
    host: PluginHost,
    spec: PluginSpec,
    /// The plugin file's [`watch_key`]; `None` for standard plugins.
    file: Option<PathBuf>,
    instance: Option<I>,
    /// The last failure discarded the instance: instantiate afresh before the next call.
    discarded: bool,
    supervisor: Supervisor,
    guest_errors: FailureLog,
    stats: Stats,
}

impl<I: Instance> Slot<I> {
    /// A slot that loads its plugin on the first permitted tick.
    pub(crate) fn new(host: PluginHost, spec: PluginSpec, supervision: &SupervisionConfig) -> Self {
        let file = match &spec.source {
            PluginSource::File(path) => watch_key(path).or_else(|| Some(path.clone())),
            PluginSource::Standard(_) => None,
        };
        let name = spec.instance.clone();
        Slot {
            guest_errors: FailureLog::new(&format!("{} `{name}`", I::KIND)),
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
    pub(crate) async fn ready(&mut self, now: Instant) -> Option<&mut I> {
        if !self.supervisor.may_call(now) {
            return None;
        }
        match &mut self.instance {
            None => match I::load(&self.host, self.spec.clone()).await {
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
            ("kind".to_string(), I::KIND.to_string()),
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
        let (kind, name) = (I::KIND, &self.name);
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
        let (kind, name) = (I::KIND, self.name.clone());
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
            if self.instance.as_ref().is_some_and(|i| i.sha256() == digest) {
                return;
            }
        }
        match I::load(&self.host, self.spec.clone()).await {
            Ok(new) => {
                let changed = self
                    .instance
                    .as_ref()
                    .is_none_or(|old| old.sha256() != new.sha256());
                let sha = short_hex(&new.sha256());
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
        let (name, kind) = (self.name.as_str(), I::KIND);
        let base = [("plugin", name), ("kind", kind)];
        let mut out = Vec::with_capacity(16);
        for (outcome, n) in [("ok", self.stats.ok), ("error", self.stats.errors)] {
            out.push(Sample::new(
                "telltale_plugin_calls_total",
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
                "telltale_plugin_samples_dropped_total",
                &[("plugin", name), ("kind", kind), ("reason", reason)],
                n as f64,
                ts,
            ));
        }
        let current = self.supervisor.state();
        for state in PluginState::ALL {
            out.push(Sample::new(
                "telltale_plugin_state",
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
                "telltale_plugin_reloads_total",
                &[("plugin", name), ("kind", kind), ("outcome", outcome)],
                n as f64,
                ts,
            ));
        }
        for (metric, value) in [
            (
                "telltale_plugin_call_duration_seconds",
                self.stats.last_duration.as_secs_f64(),
            ),
            (
                "telltale_plugin_call_duration_seconds_sum",
                self.stats.duration_sum.as_secs_f64(),
            ),
            (
                "telltale_plugin_call_duration_seconds_count",
                self.stats.duration_count as f64,
            ),
            ("telltale_plugin_samples", self.stats.emitted as f64),
            (
                "telltale_plugin_up",
                if self.stats.up && current == PluginState::Running {
                    1.0
                } else {
                    0.0
                },
            ),
            ("telltale_plugin_restarts_total", self.stats.restarts as f64),
            (
                "telltale_plugin_consecutive_failures",
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
async fn handle_reload<I: Instance>(
    slot: &mut Slot<I>,
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

/// Runs one collector: calls `collect()` every interval under supervision and stores what
/// it returns; reloads it on request.
pub(crate) async fn collector_task(
    host: PluginHost,
    cfg: CollectorConfig,
    spec: PluginSpec,
    store: Arc<SeriesStore>,
    mut reloads: broadcast::Receiver<Reload>,
    mut stop: watch::Receiver<bool>,
) {
    let source = store.source(
        &format!("collector:{}", cfg.name),
        source_limits(&cfg.limits),
        None,
    );
    let mut slot: Slot<CollectorInstance> = Slot::new(host, spec, &cfg.supervision);
    let name = cfg.name.clone();
    let mut first = true;
    let mut tick = ticker(cfg.interval.get());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = next_reload(&mut reloads) => {
                handle_reload(&mut slot, r, &store).await;
                continue;
            }
            _ = stop.changed() => break,
        }
        if let Some(inst) = slot.ready(Instant::now()).await {
            let started = Instant::now();
            let result = inst.collect().await;
            let took = started.elapsed();
            let live = inst.is_live();
            match result {
                Ok(samples) => {
                    let n = samples.len();
                    let report = store.ingest_from(source, samples);
                    slot.stored(report);
                    if first {
                        info!(collector = %name, "first collection: {n} samples in {:.1} ms", took.as_secs_f64() * 1e3);
                        first = false;
                    }
                    slot.succeeded(took, n);
                }
                Err(e) => slot.failed(&e, took, live),
            }
        }
        slot.publish(&store, now_ms());
    }
}

/// Runs one analyzer: every interval, hands it the windows of its input series under
/// supervision and stores the derived samples; events go to the log.
pub(crate) async fn analyzer_task(
    host: PluginHost,
    cfg: AnalyzerConfig,
    spec: PluginSpec,
    store: Arc<SeriesStore>,
    mut reloads: broadcast::Receiver<Reload>,
    mut stop: watch::Receiver<bool>,
) {
    let source = store.source(
        &format!("analyzer:{}", cfg.name),
        source_limits(&cfg.limits),
        None,
    );
    let mut slot: Slot<AnalyzerInstance> = Slot::new(host, spec, &cfg.supervision);
    let name = cfg.name.clone();
    let mut tick = ticker(cfg.interval.get());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = next_reload(&mut reloads) => {
                handle_reload(&mut slot, r, &store).await;
                continue;
            }
            _ = stop.changed() => break,
        }
        let since = now_ms() - duration_ms(cfg.window.get());
        let windows: Vec<_> = cfg
            .inputs
            .iter()
            .flat_map(|sel| store.window(&sel.name, &sel.labels, since))
            .collect();
        if !windows.is_empty()
            && let Some(inst) = slot.ready(Instant::now()).await
        {
            let started = Instant::now();
            let result = inst.analyze(windows).await;
            let took = started.elapsed();
            let live = inst.is_live();
            match result {
                Ok((samples, events)) => {
                    for e in &events {
                        let labels = telltale_model::SeriesKey {
                            name: e.kind.as_str().into(),
                            labels: e.labels.clone(),
                        };
                        match e.severity {
                            Severity::Info => {
                                info!(analyzer = %name, event = %labels, "{}", e.message)
                            }
                            Severity::Warning | Severity::Critical => {
                                warn!(analyzer = %name, event = %labels, severity = %e.severity, "{}", e.message)
                            }
                        }
                    }
                    let n = samples.len();
                    let report = store.ingest_from(source, samples);
                    slot.stored(report);
                    slot.succeeded(took, n);
                }
                Err(e) => slot.failed(&e, took, live),
            }
        }
        slot.publish(&store, now_ms());
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

    fn slot(cfg: &CollectorConfig, base: &Path) -> Slot<CollectorInstance> {
        let host = PluginHost::new(None).unwrap();
        Slot::new(host, PluginSpec::collector(cfg, base), &cfg.supervision)
    }

    /// One tick as the collector task runs it; `None` when the call was skipped or the
    /// load/restart before it failed.
    async fn tick(slot: &mut Slot<CollectorInstance>) -> Option<Result<usize, PluginError>> {
        let inst = slot.ready(Instant::now()).await?;
        let started = Instant::now();
        let result = inst.collect().await;
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

    fn metric(slot: &Slot<CollectorInstance>, name: &str, extra: &[(&str, &str)]) -> f64 {
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
        let spec = PluginSpec::collector(&cfg, dir.path());
        let (_reload_tx, reloads) = broadcast::channel(4);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(collector_task(
            PluginHost::new(None).unwrap(),
            cfg,
            spec,
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
