//! [`PluginError`]: everything that can go wrong loading or calling a plugin. Every message
//! names the plugin instance; limit errors name the limit and its value; load errors name
//! the file (or `<standard>/NAME`).

use std::path::PathBuf;

use std::time::Duration;
use telltale_model::PluginKind;

/// A failure to load or call a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin engine itself could not be set up.
    #[error("cannot start the plugin engine: {message}")]
    Engine {
        /// What failed.
        message: String,
    },
    /// The compiled-plugin cache directory cannot be used.
    #[error("plugin cache directory {}: {source}", path.display())]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `.wasm` file cannot be read.
    #[error("plugin `{instance}`: cannot read {}: {source}", path.display())]
    Read {
        /// The plugin instance's configured name.
        instance: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `plugin:` names no standard plugin.
    #[error(
        "plugin `{instance}`: there is no standard plugin `{name}` (standard plugins: {known}); \
         a plugin file must end in `.wasm` or contain a `/`"
    )]
    UnknownStandard {
        /// The plugin instance's configured name.
        instance: String,
        /// The name asked for.
        name: String,
        /// The standard plugins' names, comma-separated.
        known: String,
    },
    /// The file is not a WebAssembly component wasmtime can compile.
    #[error("plugin `{instance}`: {origin} is not a valid WebAssembly component: {message}")]
    Compile {
        /// The plugin instance's configured name.
        instance: String,
        /// The file (or `<standard>/NAME`).
        origin: String,
        /// The compiler's message.
        message: String,
    },
    /// The component does not fit the contract (wrong world, missing exports, imports the
    /// host does not provide, a different contract version).
    #[error(
        "plugin `{instance}`: {origin} is not a {}@{} {kind} component: {message}",
        super::contract::PACKAGE,
        super::contract::accepted_versions()
    )]
    Incompatible {
        /// The plugin instance's configured name.
        instance: String,
        /// The file (or `<standard>/NAME`).
        origin: String,
        /// The world the configuration expects.
        kind: PluginKind,
        /// What does not fit.
        message: String,
    },
    /// The component imports an interface this host does not provide at all (an unknown
    /// `telltale:plugin` interface, or another package than `telltale:plugin` and WASI).
    #[error(
        "plugin `{instance}`: {origin} imports `{import}`, which this host does not provide; {hint}"
    )]
    UnknownImport {
        /// The plugin instance's configured name.
        instance: String,
        /// The file (or `<standard>/NAME`).
        origin: String,
        /// The import's full name (`telltale:plugin/gpu@0.3.0`).
        import: String,
        /// What the host does provide.
        hint: String,
    },
    /// The component was built against a `telltale:plugin` version this host does not
    /// accept.
    #[error(
        "plugin `{instance}`: {origin} was built for telltale:plugin@{found} (it imports \
         `{import}`); this host accepts telltale:plugin@{accepted}: rebuild the plugin against \
         this host's WIT (`sdk/wit`) or a matching telltale-sdk"
    )]
    WrongVersion {
        /// The plugin instance's configured name.
        instance: String,
        /// The file (or `<standard>/NAME`).
        origin: String,
        /// The import carrying the version.
        import: String,
        /// The version the plugin was built for.
        found: String,
        /// The versions this host accepts (`0.3.x`).
        accepted: String,
    },
    /// A grant in the configuration entry cannot be used as written.
    #[error("plugin `{instance}`: invalid grant: {message}")]
    InvalidGrant {
        /// The plugin instance's configured name.
        instance: String,
        /// What is wrong and how to write it.
        message: String,
    },
    /// The component imports a capability its configuration entry does not grant.
    #[error(
        "plugin `{instance}` imports `{interface}` but is not granted it; add \
         `grants: {{ {grant} }}` to its entry"
    )]
    NotGranted {
        /// The plugin instance's configured name.
        instance: String,
        /// The imported interface, without version (`telltale:plugin/system`).
        interface: String,
        /// The grant to add, as YAML (`system: true`).
        grant: String,
    },
    /// A call ran past its deadline and was stopped.
    #[error(
        "plugin `{instance}`: {call}() exceeded its {} deadline and was stopped",
        humantime::format_duration(*timeout)
    )]
    Timeout {
        /// The plugin instance's configured name.
        instance: String,
        /// `init`, `collect` or `analyze`.
        call: &'static str,
        /// The configured `limits.timeout`.
        timeout: Duration,
    },
    /// The plugin tried to use more linear memory than `limits.memory`.
    #[error(
        "plugin `{instance}`: memory limit {} exceeded in {call}(); the plugin was stopped",
        format_bytes(*limit)
    )]
    MemoryLimit {
        /// The plugin instance's configured name.
        instance: String,
        /// `init`, `collect` or `analyze`.
        call: &'static str,
        /// The configured `limits.memory`, bytes.
        limit: u64,
    },
    /// The plugin returned more (or longer) output than its `limits` allow; the message
    /// names the limit and its configured value. The instance is discarded.
    #[error("plugin `{instance}`: {call}() {message}")]
    LimitExceeded {
        /// The plugin instance's configured name.
        instance: String,
        /// `collect` or `analyze`.
        call: &'static str,
        /// What was returned and the limit it broke (`returned 5000000 samples, more than
        /// limits.max_samples = 100000`).
        message: String,
    },
    /// The plugin trapped (panicked, hit `unreachable`, divided by zero, ...).
    #[error("plugin `{instance}`: {call}() crashed: {message}")]
    Trap {
        /// The plugin instance's configured name.
        instance: String,
        /// `init`, `collect` or `analyze`.
        call: &'static str,
        /// The trap and its WebAssembly backtrace.
        message: String,
    },
    /// `init` rejected the plugin's `config` section.
    #[error("plugin `{instance}`: invalid config: {message}")]
    InvalidConfig {
        /// The plugin instance's configured name.
        instance: String,
        /// The plugin's explanation.
        message: String,
    },
    /// What the plugin measures does not exist on this machine.
    #[error("plugin `{instance}`: unavailable here: {message}")]
    Unavailable {
        /// The plugin instance's configured name.
        instance: String,
        /// The plugin's explanation.
        message: String,
    },
    /// The plugin reported a failure of this call.
    #[error("plugin `{instance}`: {call}() failed: {message}")]
    Failed {
        /// The plugin instance's configured name.
        instance: String,
        /// `init`, `collect` or `analyze`.
        call: &'static str,
        /// The plugin's explanation.
        message: String,
    },
    /// The plugin returned samples or events the engine refuses (bad metric name, too many).
    #[error("plugin `{instance}`: {call}() returned invalid output: {message}")]
    InvalidOutput {
        /// The plugin instance's configured name.
        instance: String,
        /// `collect` or `analyze`.
        call: &'static str,
        /// What is wrong, naming the sample.
        message: String,
    },
}

impl PluginError {
    /// A short machine-readable name of the failure, the `reason` label of
    /// `telltale_plugin_last_error_timestamp_seconds` (a rule can alert on a kind of
    /// failure without parsing messages).
    pub fn reason(&self) -> &'static str {
        match self {
            PluginError::Engine { .. } | PluginError::CacheDir { .. } => "engine",
            PluginError::Read { .. } => "read",
            PluginError::UnknownStandard { .. }
            | PluginError::Compile { .. }
            | PluginError::Incompatible { .. }
            | PluginError::UnknownImport { .. }
            | PluginError::WrongVersion { .. } => "incompatible",
            PluginError::InvalidGrant { .. } | PluginError::NotGranted { .. } => "grant",
            PluginError::Timeout { .. } => "timeout",
            PluginError::MemoryLimit { .. } => "memory_limit",
            PluginError::LimitExceeded { .. } => "output_limit",
            PluginError::Trap { .. } => "trap",
            PluginError::InvalidConfig { .. } => "invalid_config",
            PluginError::Unavailable { .. } => "unavailable",
            PluginError::Failed { .. } => "failed",
            PluginError::InvalidOutput { .. } => "invalid_output",
        }
    }

    /// Whether the failure was a limit or crash that stopped the instance (it is
    /// re-instantiated on the next call); `false` for errors the plugin reported itself.
    pub fn stopped_instance(&self) -> bool {
        matches!(
            self,
            PluginError::Timeout { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::Trap { .. }
                | PluginError::LimitExceeded { .. }
        )
    }
}

/// `64 MiB`, `512 KiB`, or bytes when not a whole number of KiB/MiB/GiB.
pub(crate) fn format_bytes(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    match n {
        0 => "0 bytes".to_string(),
        n if n % GIB == 0 => format!("{} GiB", n / GIB),
        n if n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_plugin_and_limit() {
        let e = PluginError::Timeout {
            instance: "slow".into(),
            call: "collect",
            timeout: Duration::from_secs(2),
        };
        assert_eq!(
            e.to_string(),
            "plugin `slow`: collect() exceeded its 2s deadline and was stopped"
        );
        let e = PluginError::MemoryLimit {
            instance: "big".into(),
            call: "analyze",
            limit: 64 << 20,
        };
        assert!(
            e.to_string().contains("memory limit 64 MiB exceeded"),
            "{e}"
        );
        assert_eq!(format_bytes(1500), "1500 bytes");
    }
}
