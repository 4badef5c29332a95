//! The life of one plugin instance: its store (WASI context, limits, capabilities), the
//! instantiate + `init` sequence, and every call under a deadline. After a trap, a missed
//! deadline or a memory-limit kill the instance is poisoned, so its store is dropped and
//! the next call instantiates a fresh one from the [`InstancePre`] (and runs `init` again).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::types;
use super::capabilities::Capabilities;
use super::convert::OutputLimits;
use super::error::PluginError;
use super::limits::{self, DEADLINE_GRACE, Deadline, EPOCH_TICK, MemoryLimiter};
use super::output::OutputCapture;
use super::world::World;

/// The data of a plugin's [`Store`]: everything host code needs while the guest runs.
/// (`pub` only because the sealed `Binding` trait names it; this module is private.)
pub struct StoreState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) caps: Arc<Capabilities>,
    pub(crate) deadline: Deadline,
    /// What `host.log` may still forward in the call in progress.
    pub(crate) log: LogBudget,
}

/// What one `host.log` line costs beyond its message: the timestamp, level and plugin
/// name the engine's log adds (about 80 bytes), rounded up.
pub(crate) const LOG_LINE_COST: u64 = 128;

/// The per-call cap on `host.log` (`limits.max_log_bytes`): without it one call can write
/// hundreds of megabytes to the engine's log. Messages past the cap are counted, not kept,
/// and reported in one warning after the call.
#[derive(Debug)]
pub(crate) struct LogBudget {
    cap: u64,
    used: u64,
    dropped_messages: u64,
    dropped_bytes: u64,
}

impl LogBudget {
    pub(crate) fn new(cap: u64) -> LogBudget {
        LogBudget {
            cap,
            used: 0,
            dropped_messages: 0,
            dropped_bytes: 0,
        }
    }

    /// Whether a message of `len` bytes may be forwarded; counts it either way. Each message
    /// is charged [`LOG_LINE_COST`] on top of its text: it becomes a whole log line however
    /// short it is, so empty messages must not be free.
    pub(crate) fn admit(&mut self, len: usize) -> bool {
        let len = len as u64;
        let charge = len.saturating_add(LOG_LINE_COST);
        if self.used.saturating_add(charge) > self.cap {
            self.dropped_messages += 1;
            self.dropped_bytes += len;
            return false;
        }
        self.used += charge;
        true
    }

    /// Starts a new call's budget, returning what the previous call dropped (messages,
    /// bytes).
    fn reset(&mut self) -> (u64, u64) {
        let dropped = (self.dropped_messages, self.dropped_bytes);
        self.used = 0;
        self.dropped_messages = 0;
        self.dropped_bytes = 0;
        dropped
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A future borrowed from an instance and its store for one call.
pub type CallFuture<'a, R> =
    Pin<Box<dyn Future<Output = wasmtime::Result<Result<R, types::PluginError>>> + Send + 'a>>;

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]. Every instance holds
/// it (through an `Arc`), so deadlines keep working as long as any instance lives.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    /// Starts ticking `engine`.
    pub(crate) fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("telltale-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a [`Runner`] is made from.
pub(crate) struct RunnerParts<W: World> {
    pub(crate) instance: String,
    pub(crate) origin: String,
    pub(crate) engine: Engine,
    pub(crate) pre: W::Pre,
    pub(crate) caps: Arc<Capabilities>,
    pub(crate) timeout: Duration,
    pub(crate) memory: u64,
    /// `limits.max_output_bytes`: stdout + stderr kept per call.
    pub(crate) max_output: u64,
    /// `limits.max_log_bytes`: `host.log` messages kept per call.
    pub(crate) max_log: u64,
    /// The caps on returned samples and events.
    pub(crate) output_limits: OutputLimits,
    pub(crate) config_json: String,
    /// Held, never read: keeps the epoch thread running while this instance lives.
    pub(crate) _ticker: Arc<EpochTicker>,
}

struct Live<W: World> {
    store: Store<StoreState>,
    exports: W::Exports,
}

/// One plugin instance: its pre-instantiated component and, while healthy, a live store.
pub(crate) struct Runner<W: World> {
    parts: RunnerParts<W>,
    output: OutputCapture,
    live: Option<Live<W>>,
}

impl<W: World> Runner<W> {
    /// A runner that instantiates on [`Runner::start`] or its first call.
    pub(crate) fn new(parts: RunnerParts<W>) -> Runner<W> {
        Runner {
            output: OutputCapture::new(parts.max_output),
            parts,
            live: None,
        }
    }

    /// The configured instance name.
    pub(crate) fn instance(&self) -> &str {
        &self.parts.instance
    }

    /// The file (or `<standard>/NAME`) the component came from.
    pub(crate) fn origin(&self) -> &str {
        &self.parts.origin
    }

    /// Whether a healthy instance is live (false after a trap until the next call).
    pub(crate) fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The caps on what one call may return.
    pub(crate) fn output_limits(&self) -> OutputLimits {
        self.parts.output_limits
    }

    /// Drops the live instance (after it broke a limit): the next call starts a fresh one.
    pub(crate) fn discard(&mut self) {
        self.live = None;
    }

    fn new_store(&self) -> Store<StoreState> {
        // No preopens, no environment, no arguments, no sockets: the plugin's only way out
        // is through the host imports its grants allow.
        let wasi = WasiCtxBuilder::new()
            .stdout(self.output.stdout())
            .stderr(self.output.stderr())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = StoreState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.parts.memory),
            caps: Arc::clone(&self.parts.caps),
            deadline: Deadline::default(),
            log: LogBudget::new(self.parts.max_log),
        };
        let mut store = Store::new(&self.parts.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_callback(limits::on_epoch_tick);
        store
    }

    /// Instantiates and runs `init`, under one deadline.
    pub(crate) async fn start(&mut self) -> Result<(), PluginError> {
        self.live = None;
        let mut store = self.new_store();
        store.data_mut().deadline.arm(self.parts.timeout);
        store.set_epoch_deadline(1);
        let pre = &self.parts.pre;
        let config = self.parts.config_json.as_str();
        let outcome = tokio::time::timeout(self.parts.timeout + DEADLINE_GRACE, async {
            let exports = W::instantiate(pre, &mut store).await?;
            let result = W::init(&exports, &mut store, config).await?;
            Ok::<_, wasmtime::Error>((exports, result))
        })
        .await;
        let dropped_log = store.data_mut().log.reset();
        let result = match outcome {
            Ok(Ok((exports, Ok(())))) => {
                self.live = Some(Live { store, exports });
                Ok(())
            }
            Ok(Ok((_, Err(guest)))) => Err(self.guest_error("init", guest)),
            Ok(Err(err)) => Err(classify(&self.parts, "init", &store, err, &self.output)),
            Err(_elapsed) => Err(self.timeout_error("init")),
        };
        self.report_dropped_log("init", dropped_log);
        self.forward_output();
        result
    }

    /// Runs one call, (re-)instantiating first if needed. `f` starts the call on the live
    /// instance; it runs under the instance's deadline and memory cap.
    pub(crate) async fn call<R>(
        &mut self,
        call: &'static str,
        f: impl for<'a> FnOnce(&'a W::Exports, &'a mut Store<StoreState>) -> CallFuture<'a, R>,
    ) -> Result<R, PluginError> {
        if self.live.is_none() {
            self.start().await?;
        }
        let Some(live) = self.live.as_mut() else {
            return Err(self.timeout_error(call));
        };
        live.store.data_mut().deadline.arm(self.parts.timeout);
        live.store.set_epoch_deadline(1);
        let outcome = tokio::time::timeout(
            self.parts.timeout + DEADLINE_GRACE,
            f(&live.exports, &mut live.store),
        )
        .await;
        let dropped_log = live.store.data_mut().log.reset();
        let result = match outcome {
            Ok(Ok(Ok(value))) => Ok(value),
            // The plugin reported an error itself: it is still healthy.
            Ok(Ok(Err(guest))) => Err(self.guest_error(call, guest)),
            Ok(Err(err)) => {
                let e = classify(&self.parts, call, &live.store, err, &self.output);
                self.live = None;
                Err(e)
            }
            // The guest did not reach an epoch check (a host import blocked): the store is
            // mid-call and unusable.
            Err(_elapsed) => {
                self.live = None;
                Err(self.timeout_error(call))
            }
        };
        self.report_dropped_log(call, dropped_log);
        self.forward_output();
        result
    }

    fn timeout_error(&self, call: &'static str) -> PluginError {
        PluginError::Timeout {
            instance: self.parts.instance.clone(),
            call,
            timeout: self.parts.timeout,
        }
    }

    fn guest_error(&self, call: &'static str, e: types::PluginError) -> PluginError {
        let instance = self.parts.instance.clone();
        match e {
            types::PluginError::InvalidConfig(message) => {
                PluginError::InvalidConfig { instance, message }
            }
            types::PluginError::Unavailable(message) => {
                PluginError::Unavailable { instance, message }
            }
            types::PluginError::Failed(message) => PluginError::Failed {
                instance,
                call,
                message,
            },
        }
    }

    /// One warning for the `host.log` messages a call had dropped over its cap.
    fn report_dropped_log(&self, call: &'static str, (messages, bytes): (u64, u64)) {
        if messages > 0 {
            tracing::warn!(
                plugin = %self.parts.instance,
                "{call}() logged more than limits.max_log_bytes = {}; {messages} message(s) \
                 ({}) dropped",
                super::error::format_bytes(self.parts.max_log),
                super::error::format_bytes(bytes)
            );
        }
    }

    fn forward_output(&self) {
        self.output.forward(&self.parts.instance);
    }
}

/// Tells a deadline or memory-limit kill from any other trap, by the store's own records.
/// A trap after a Rust panic is an anonymous `unreachable`: the panic message the guest
/// printed to stderr is put first.
fn classify<W: World>(
    parts: &RunnerParts<W>,
    call: &'static str,
    store: &Store<StoreState>,
    err: wasmtime::Error,
    output: &OutputCapture,
) -> PluginError {
    let state = store.data();
    let instance = parts.instance.clone();
    if state.deadline.missed() {
        PluginError::Timeout {
            instance,
            call,
            timeout: parts.timeout,
        }
    } else if state.limiter.hit() {
        PluginError::MemoryLimit {
            instance,
            call,
            limit: parts.memory,
        }
    } else {
        let mut message = err.root_cause().to_string();
        if let Some(panic) = output.panic_message() {
            message = format!("{panic} ({message})");
        }
        if let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
            message.push('\n');
            message.push_str(&bt.to_string());
        }
        PluginError::Trap {
            instance,
            call,
            message,
        }
    }
}
