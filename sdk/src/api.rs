//! The ergonomic layer over the generated bindings: re-exported types, the plugin traits,
//! sample/event builders, config parsing, error constructors and the host helpers.
//!
//! Every example in these docs is compiled and run by `cargo test -p telltale-sdk
//! --features collector --doc` (and `--features analyzer`).

use serde::de::DeserializeOwned;

#[cfg(feature = "collector")]
pub use crate::batch::{Displayed, SampleRef, SampleWriter, Samples, Text, display};
pub use crate::bindings::telltale::plugin::host::Level;
/// The wire shape `collect` returns (contract `0.3`); write it with [`Samples`], which
/// fills its columns for you.
#[cfg(feature = "collector")]
pub use crate::bindings::telltale::plugin::types::SampleBatch;
pub use crate::bindings::telltale::plugin::types::{
    Analysis, Event, Label, PluginError, Point, Sample, SeriesWindow, Severity,
};

/// The typed system snapshot import (grant `system`): call [`system::snapshot`].
///
/// Importing it makes the component need `grants: { system: true }` in its config entry
/// (`--grant system` with `telltale plugin run`); without the grant the engine refuses to
/// load it. Host imports only exist inside the engine: native unit tests must not call it.
///
/// ```no_run
/// use telltale_sdk::{PluginError, Samples, system};
///
/// fn collect_memory(out: &mut Samples) -> Result<(), PluginError> {
///     let snap = system::snapshot();
///     out.sample("memory_available_bytes", snap.memory.available_bytes as f64);
///     Ok(())
/// }
/// # collect_memory(&mut Samples::new()).unwrap();
/// ```
#[cfg(feature = "collector")]
pub use crate::bindings::telltale::plugin::system;

/// Reading files under granted prefixes (grant `files`): call [`files::read`].
///
/// Importing it makes the component need `grants: { files: ["/some/prefix"] }` in its
/// config entry (`--grant files=/some/prefix`). Paths must be absolute; `..` and symlinks
/// are resolved before the prefix check; the host caps the size of a file. WASI's own
/// file API (`std::fs`) sees no files at all: this import is the only way to read one.
///
/// ```no_run
/// use telltale_sdk::{PluginError, Samples, files};
///
/// fn open_files(out: &mut Samples) -> Result<(), PluginError> {
///     let bytes = files::read("/proc/sys/fs/file-nr").map_err(PluginError::failed)?;
///     let text = String::from_utf8_lossy(&bytes);
///     let used: f64 = text
///         .split_whitespace()
///         .next()
///         .and_then(|n| n.parse().ok())
///         .ok_or_else(|| PluginError::failed("unexpected /proc/sys/fs/file-nr format"))?;
///     out.sample("fs_open_files", used);
///     Ok(())
/// }
/// # open_files(&mut Samples::new()).unwrap();
/// ```
#[cfg(feature = "collector")]
pub use crate::bindings::telltale::plugin::files;

/// A collector plugin: built once from its config, then asked for samples on every interval.
///
/// Register the type with [`export_collector!`](crate::export_collector). The engine calls
/// `init` once per instantiation (again after the instance was restarted following a crash
/// or a missed deadline), then `collect` on every interval of the config entry, which
/// writes its samples into the batch `out` (see [`Samples`]).
///
/// ```
/// use serde::Deserialize;
/// use telltale_sdk::{Collector, PluginError, Samples, parse_config};
///
/// /// The entry's `config:` section.
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config {
///     #[serde(default = "default_queue")]
///     queue: String,
/// }
///
/// fn default_queue() -> String {
///     "jobs".to_string()
/// }
///
/// struct QueueProbe {
///     queue: String,
///     polls: u64,
/// }
///
/// impl Collector for QueueProbe {
///     fn init(config: &str) -> Result<Self, PluginError> {
///         let cfg: Config = parse_config(config)?;
///         Ok(QueueProbe { queue: cfg.queue, polls: 0 })
///     }
///
///     fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
///         self.polls += 1;
///         out.sample("queue_depth", 3.0).label("queue", &self.queue);
///         out.sample("queue_probe_polls_total", self.polls as f64);
///         Ok(())
///     }
/// }
///
/// telltale_sdk::export_collector!(QueueProbe);
///
/// # fn main() {
/// // The logic runs natively as well, which is how a plugin's unit tests call it.
/// let mut probe = QueueProbe::init(r#"{"queue": "mail"}"#).unwrap();
/// let samples = telltale_sdk::collect_to_vec(&mut probe).unwrap();
/// assert_eq!(samples[0].labels[0].value, "mail");
/// assert_eq!(telltale_sdk::collect_to_vec(&mut probe).unwrap()[1].value, 2.0);
/// # }
/// ```
#[cfg(feature = "collector")]
pub trait Collector: Sized + 'static {
    /// Builds the plugin from its `config` section, given as JSON (`null` when the config
    /// entry has none). Use [`parse_config`] to read it into your own type.
    fn init(config: &str) -> Result<Self, PluginError>;

    /// Writes the samples gathered now into `out` (timestamped at the start of the call
    /// unless a sample says otherwise). When it returns an error, what it wrote is
    /// dropped.
    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError>;
}

/// Calls `plugin.collect` with a fresh batch and returns the samples as owned values: how a
/// plugin's native unit tests look at what it emits.
///
/// ```
/// use telltale_sdk::{Collector, PluginError, Samples, collect_to_vec};
///
/// struct One;
///
/// impl Collector for One {
///     fn init(_config: &str) -> Result<Self, PluginError> {
///         Ok(One)
///     }
///     fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
///         out.sample("one", 1.0).label("kind", "constant");
///         Ok(())
///     }
/// }
///
/// let samples = collect_to_vec(&mut One).unwrap();
/// assert_eq!(samples[0].name, "one");
/// assert_eq!(samples[0].labels[0].value, "constant");
/// ```
#[cfg(feature = "collector")]
pub fn collect_to_vec<C: Collector>(plugin: &mut C) -> Result<Vec<Sample>, PluginError> {
    let mut out = Samples::new();
    plugin.collect(&mut out)?;
    Ok(out.to_vec())
}

/// An analyzer plugin: built once from its config, then given the windows of the series
/// selected in its config entry on every interval.
///
/// Register the type with [`export_analyzer!`](crate::export_analyzer). Analyzers are pure
/// computation: their world imports no capability.
///
/// ```
/// use telltale_sdk::{Analysis, Analyzer, PluginError, SeriesWindow, Severity, event, sample};
///
/// struct Peak;
///
/// impl Analyzer for Peak {
///     fn init(_config: &str) -> Result<Self, PluginError> {
///         Ok(Peak)
///     }
///
///     fn analyze(&mut self, windows: Vec<SeriesWindow>) -> Result<Analysis, PluginError> {
///         let mut out = Analysis { samples: Vec::new(), events: Vec::new() };
///         for w in &windows {
///             let Some(last) = w.points.last() else { continue };
///             let peak = w.points.iter().map(|p| p.value).fold(f64::MIN, f64::max);
///             out.samples.push(
///                 sample(format!("{}_peak", w.name), peak).labels(&w.labels).at(last.timestamp_ms),
///             );
///             if peak > 90.0 {
///                 out.events.push(
///                     event("peak", Severity::Warning, format!("{} peaked at {peak}", w.name))
///                         .labels(&w.labels),
///                 );
///             }
///         }
///         Ok(out)
///     }
/// }
///
/// telltale_sdk::export_analyzer!(Peak);
///
/// # fn main() {
/// use telltale_sdk::Point;
/// let window = SeriesWindow {
///     name: "cpu_usage_percent".into(),
///     labels: Vec::new(),
///     points: vec![
///         Point { timestamp_ms: 1_000, value: 50.0 },
///         Point { timestamp_ms: 2_000, value: 95.0 },
///     ],
/// };
/// let out = Peak::init("null").unwrap().analyze(vec![window]).unwrap();
/// assert_eq!(out.samples[0].name, "cpu_usage_percent_peak");
/// assert_eq!(out.samples[0].value, 95.0);
/// assert_eq!(out.samples[0].timestamp_ms, 2_000);
/// assert_eq!(out.events.len(), 1);
/// # }
/// ```
#[cfg(feature = "analyzer")]
pub trait Analyzer: Sized + 'static {
    /// Builds the plugin from its `config` section, given as JSON (`null` when the config
    /// entry has none). Use [`parse_config`] to read it into your own type.
    fn init(config: &str) -> Result<Self, PluginError>;

    /// Turns the windows (each one series, oldest point first) into derived samples and
    /// events.
    fn analyze(&mut self, windows: Vec<SeriesWindow>) -> Result<Analysis, PluginError>;
}

/// Registers a [`Collector`] type as the component's `init`/`collect` exports.
///
/// Use it once, at the top level of the plugin crate: `telltale_sdk::export_collector!(MyPlugin);`
/// (see [`Collector`] for a whole plugin). Calls before a successful `init` fail with
/// [`PluginError::Failed`].
#[cfg(feature = "collector")]
#[macro_export]
macro_rules! export_collector {
    ($ty:ty) => {
        const _: () = {
            struct __TelltaleExports;

            impl $crate::bindings::Guest for __TelltaleExports {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::__private::init::<$ty>(&config, <$ty as $crate::Collector>::init)
                }

                fn collect() -> ::core::result::Result<$crate::SampleBatch, $crate::PluginError> {
                    $crate::__private::collect::<$ty>()
                }
            }

    $crate::bindings::__export_world!(__TelltaleExports with_types_in $crate::bindings);
        };
    };
}

/// Registers an [`Analyzer`] type as the component's `init`/`analyze` exports.
///
/// Use it once, at the top level of the plugin crate: `telltale_sdk::export_analyzer!(MyPlugin);`
/// (see [`Analyzer`] for a whole plugin). Calls before a successful `init` fail with
/// [`PluginError::Failed`].
#[cfg(feature = "analyzer")]
#[macro_export]
macro_rules! export_analyzer {
    ($ty:ty) => {
        const _: () = {
            struct __TelltaleExports;

            impl $crate::bindings::Guest for __TelltaleExports {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<(), $crate::PluginError> {
                    $crate::__private::init::<$ty>(&config, <$ty as $crate::Analyzer>::init)
                }

                fn analyze(
                    windows: ::std::vec::Vec<$crate::SeriesWindow>,
                ) -> ::core::result::Result<$crate::Analysis, $crate::PluginError> {
                    $crate::__private::with_state::<$ty, _>(move |plugin| {
                        <$ty as $crate::Analyzer>::analyze(plugin, windows)
                    })
                }
            }

    $crate::bindings::__export_world!(__TelltaleExports with_types_in $crate::bindings);
        };
    };
}

/// Where the plugin's state lives between calls. A component instance is single-threaded,
/// so one thread-local slot is enough.
pub(crate) mod state {
    use std::any::Any;
    use std::cell::RefCell;

    use super::PluginError;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    /// Runs the plugin's `init` and stores the result for later calls.
    pub fn init<T: 'static>(
        config: &str,
        build: fn(&str) -> Result<T, PluginError>,
    ) -> Result<(), PluginError> {
        let plugin = build(config)?;
        STATE.with(|slot| *slot.borrow_mut() = Some(Box::new(plugin)));
        Ok(())
    }

    /// Runs the plugin's `collect` on the state stored by [`init`] with a batch sized like
    /// the previous call's, and returns the batch in the contract's shape.
    #[cfg(feature = "collector")]
    pub fn collect<T: super::Collector>() -> Result<super::SampleBatch, PluginError> {
        with_state::<T, _>(|plugin| {
            let mut out = super::Samples::for_call();
            plugin.collect(&mut out)?;
            Ok(out.into_batch())
        })
    }

    /// Runs `f` on the state stored by [`init`]; fails when `init` has not succeeded.
    pub fn with_state<T: 'static, R>(
        f: impl FnOnce(&mut T) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        STATE.with(|slot| {
            let mut slot = slot.borrow_mut();
            match slot.as_mut().and_then(|s| s.downcast_mut::<T>()) {
                Some(plugin) => f(plugin),
                None => Err(PluginError::Failed(
                    "the plugin was called before a successful init()".to_string(),
                )),
            }
        })
    }
}

/// Parses the JSON config passed to `init` into `T`.
///
/// The operator writes the entry's `config:` section in YAML; the engine hands it to `init`
/// as JSON. `null` and an empty string (no `config` in the entry) parse as `{}`, so a
/// struct whose fields all have `#[serde(default)]` accepts a missing config. Errors are
/// [`PluginError::InvalidConfig`] with serde's message (which names the field and position);
/// the engine shows it to the operator and does not start the plugin.
///
/// ```
/// use serde::Deserialize;
/// use telltale_sdk::{PluginError, parse_config};
///
/// #[derive(Deserialize)]
/// #[serde(deny_unknown_fields)] // a typo in the operator's YAML is an error, not ignored
/// struct Config {
///     #[serde(default)]
///     per_core: bool,
///     #[serde(default = "default_port")]
///     port: u16,
/// }
///
/// fn default_port() -> u16 {
///     9100
/// }
///
/// let cfg: Config = parse_config(r#"{"per_core": true}"#).unwrap();
/// assert!(cfg.per_core);
/// assert_eq!(cfg.port, 9100);
///
/// let missing: Config = parse_config("null").unwrap(); // no `config:` in the entry
/// assert!(!missing.per_core);
///
/// match parse_config::<Config>(r#"{"per_cores": true}"#) {
///     Err(PluginError::InvalidConfig(message)) => assert!(message.contains("per_cores")),
///     _ => panic!("a misspelt key must be refused"),
/// }
/// ```
pub fn parse_config<T: DeserializeOwned>(json: &str) -> Result<T, PluginError> {
    let trimmed = json.trim();
    let json = if trimmed.is_empty() || trimmed == "null" {
        "{}"
    } else {
        trimmed
    };
    serde_json::from_str(json).map_err(|e| PluginError::InvalidConfig(e.to_string()))
}

/// Starts an owned sample of metric `name` with `value`, timestamped now ([`now_ms`]).
/// Add labels with [`Sample::label`] and change the time with [`Sample::at`]. Analyzers
/// return these (`Analysis::samples`); a collector writes into its batch with
/// `Samples::sample` instead, which allocates nothing per sample (or pushes these with
/// `Samples::push`).
///
/// Names follow Prometheus' conventions, which the engine checks
/// (`[a-zA-Z_:][a-zA-Z0-9_:]*`): `snake_case`, prefixed with what is measured, in base units
/// (`_bytes`, `_seconds`), `_total` for counters, `_percent` for 0–100 ratios. Label names
/// are `[a-zA-Z_][a-zA-Z0-9_]*` and must not start with `__`.
///
/// ```
/// use telltale_sdk::sample;
///
/// let s = sample("nginx_connections_active", 12.0)
///     .label("server", "web-1")
///     .at(1_767_225_600_000);
/// assert_eq!(s.name, "nginx_connections_active");
/// assert_eq!(s.labels[0].name, "server");
/// assert_eq!(s.timestamp_ms, 1_767_225_600_000);
/// ```
pub fn sample(name: impl Into<String>, value: f64) -> Sample {
    Sample {
        name: name.into(),
        labels: Vec::new(),
        value,
        timestamp_ms: now_ms(),
    }
}

impl Sample {
    /// Adds the label `name="value"`.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Sample {
        self.labels.push(Label {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Adds every label of `labels` (e.g. those of an input window).
    ///
    /// ```
    /// use telltale_sdk::{Label, sample};
    ///
    /// let input = vec![Label { name: "queue".into(), value: "jobs".into() }];
    /// let s = sample("queue_depth_change", 4.0).labels(&input).label("window", "5m");
    /// assert_eq!(s.labels.len(), 2);
    /// ```
    pub fn labels<'a>(mut self, labels: impl IntoIterator<Item = &'a Label>) -> Sample {
        self.labels.extend(labels.into_iter().cloned());
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn at(mut self, timestamp_ms: i64) -> Sample {
        self.timestamp_ms = timestamp_ms;
        self
    }
}

/// Starts an event of `kind` (e.g. `change-point`), timestamped now. Events are what an
/// analyzer noticed that is not a number; rules see them, and they are logged.
///
/// ```
/// use telltale_sdk::{Severity, event};
///
/// let e = event("change-point", Severity::Warning, "latency doubled at 12:03")
///     .label("service", "api");
/// assert_eq!(e.kind, "change-point");
/// assert_eq!(e.labels[0].value, "api");
/// ```
pub fn event(kind: impl Into<String>, severity: Severity, message: impl Into<String>) -> Event {
    Event {
        kind: kind.into(),
        severity,
        message: message.into(),
        labels: Vec::new(),
        timestamp_ms: now_ms(),
    }
}

impl Event {
    /// Adds the label `name="value"`.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Event {
        self.labels.push(Label {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Adds every label of `labels` (e.g. those of the window the event is about).
    pub fn labels<'a>(mut self, labels: impl IntoIterator<Item = &'a Label>) -> Event {
        self.labels.extend(labels.into_iter().cloned());
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn at(mut self, timestamp_ms: i64) -> Event {
        self.timestamp_ms = timestamp_ms;
        self
    }
}

/// Wall-clock time in milliseconds since the Unix epoch, from the host.
///
/// Outside WebAssembly (a plugin's native unit tests) it reads the system clock instead,
/// so plugin logic can be tested with plain `cargo test`.
///
/// ```
/// let t = telltale_sdk::now_ms();
/// assert!(t > 1_600_000_000_000);
/// ```
pub fn now_ms() -> i64 {
    #[cfg(target_family = "wasm")]
    {
        crate::bindings::telltale::plugin::host::now_ms()
    }
    #[cfg(not(target_family = "wasm"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Writes a line to the engine's log, tagged with the plugin's instance name. The host
/// caps the length of a message. (A plugin's own stdout/stderr are captured too, capped,
/// and forwarded to the log; `log` adds a level.)
///
/// Outside WebAssembly (native unit tests) it prints to standard error instead.
///
/// ```
/// use telltale_sdk::{Level, log};
///
/// log(Level::Warn, "the status page answered 503; reporting nothing this time");
/// ```
pub fn log(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    {
        crate::bindings::telltale::plugin::host::log(level, message);
    }
    #[cfg(not(target_family = "wasm"))]
    {
        eprintln!("[{level:?}] {message}");
    }
}

/// Shorthands for the three errors a plugin reports. Return them from `init`, `collect` or
/// `analyze`; the engine logs them, naming the plugin instance.
///
/// ```
/// use telltale_sdk::PluginError;
///
/// let e = PluginError::invalid_config("`port` must be between 1 and 65535");
/// assert!(matches!(e, PluginError::InvalidConfig(_)));
/// let e = PluginError::unavailable("no GPU on this machine");
/// assert!(matches!(e, PluginError::Unavailable(_)));
/// let e = PluginError::failed(format!("status page answered {}", 503));
/// assert!(matches!(e, PluginError::Failed(ref m) if m.contains("503")));
/// ```
impl PluginError {
    /// The configuration given to `init` is wrong; say what and where.
    pub fn invalid_config(message: impl Into<String>) -> PluginError {
        PluginError::InvalidConfig(message.into())
    }

    /// What the plugin measures does not exist here (no GPU, no sensor).
    pub fn unavailable(message: impl Into<String>) -> PluginError {
        PluginError::Unavailable(message.into())
    }

    /// Any other failure of this call.
    pub fn failed(message: impl Into<String>) -> PluginError {
        PluginError::Failed(message.into())
    }
}
