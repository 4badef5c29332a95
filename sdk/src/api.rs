//! The ergonomic layer over the generated bindings: re-exported types, the plugin traits,
//! sample/event builders, config parsing and the host helpers.

use serde::de::DeserializeOwned;

pub use crate::bindings::telltale::plugin::host::Level;
pub use crate::bindings::telltale::plugin::types::{
    Analysis, Event, Label, PluginError, Point, Sample, SeriesWindow, Severity,
};

/// The typed system snapshot import (grant `system`): call [`system::snapshot`].
#[cfg(feature = "collector")]
pub use crate::bindings::telltale::plugin::system;

/// Reading files under granted prefixes (grant `files`): call [`files::read`].
#[cfg(feature = "collector")]
pub use crate::bindings::telltale::plugin::files;

/// A collector plugin: built once from its config, then asked for samples on every interval.
///
/// Register the type with [`export_collector!`](crate::export_collector).
#[cfg(feature = "collector")]
pub trait Collector: Sized + 'static {
    /// Builds the plugin from its `config` section, given as JSON (`null` when the config
    /// entry has none). Use [`parse_config`] to read it into your own type.
    fn init(config: &str) -> Result<Self, PluginError>;

    /// Returns the samples gathered now.
    fn collect(&mut self) -> Result<Vec<Sample>, PluginError>;
}

/// An analyzer plugin: built once from its config, then given the windows of the series
/// selected in its config entry on every interval.
///
/// Register the type with [`export_analyzer!`](crate::export_analyzer).
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

                fn collect()
                -> ::core::result::Result<::std::vec::Vec<$crate::Sample>, $crate::PluginError>
                {
                    $crate::__private::with_state::<$ty, _>(|plugin| {
                        <$ty as $crate::Collector>::collect(plugin)
                    })
                }
            }

    $crate::bindings::__export_world!(__TelltaleExports with_types_in $crate::bindings);
        };
    };
}

/// Registers an [`Analyzer`] type as the component's `init`/`analyze` exports.
///
/// Use it once, at the top level of the plugin crate: `telltale_sdk::export_analyzer!(MyPlugin);`
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
/// `null` and an empty string (no `config` in the plugin's entry) parse as `{}`, so a
/// struct whose fields all have `#[serde(default)]` accepts a missing config. Errors are
/// [`PluginError::InvalidConfig`] with serde's message (which names the field and position).
///
/// ```ignore
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config { #[serde(default)] per_core: bool }
/// let cfg: Config = telltale_sdk::parse_config(config)?;
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

/// Starts a sample of metric `name` with `value`, timestamped now ([`now_ms`]).
/// Add labels with [`Sample::label`] and change the time with [`Sample::at`].
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

/// Starts an event of `kind` (e.g. `change-point`), timestamped now.
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
/// caps the length of a message.
///
/// Outside WebAssembly (native unit tests) it prints to standard error instead.
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
