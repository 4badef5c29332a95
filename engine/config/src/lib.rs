//! The YAML configuration: its types, loading with positioned errors, `${ENV}` substitution,
//! semantic checks and the JSON Schema.
//!
//! Owns what operators write in the config file, and every rule about it. Invariants:
//! * [`load`] checks syntax and types; [`check`] holds every semantic check (ranges, limits
//!   that must leave room for others, unique names, routes naming real notifiers, each
//!   notifier kind's settings, grants), each problem with file:line:column and a hint. The
//!   engine's builder calls [`check`] once, for `run` and `check` alike; no other crate
//!   validates config values again, and none replaces a value an operator wrote by a
//!   default.
//! * The grant table ([`GRANTS`]) is the one list of plugin capabilities: the `Grants`
//!   type, the plugin host's load-time checks and `plugin inspect` read it.
//!
//! Loading is three passes over one text: environment substitution (positions are mapped
//! back to the original text), structural parsing by serde (unknown keys and wrong types
//! come back with serde_yaml's line and column), then semantic checks whose positions come
//! from `locate.rs`, a small walker over block-style YAML.

pub mod alerting;
mod env;
mod grants;
mod locate;
pub mod notifiers;
pub mod scalers;
mod store;
mod types;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

pub use grants::{GRANTS, Grant, GrantShape, Grants, grant};
pub(crate) use locate::{Seg, locate};
pub use notifiers::{ConsoleConfig, NotifierConfig, NotifierKind, WebhookConfig};
pub use types::*;

use telltale_diagnostics::{Diagnostic, Diagnostics, Position, did_you_mean};

/// The configuration used when `telltale run` gets no file.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.yaml");

/// The name shown in diagnostics for the embedded default configuration.
pub const EMBEDDED_NAME: &str = "<embedded default config>";

/// A parsed configuration and where it came from. Its syntax and types are checked;
/// what the types cannot express (ranges, references between sections, …) is checked by
/// [`check`], which the engine's builder calls once for `run` and `check` alike.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: Config,
    /// The text as written (before `${NAME}` substitution), for positions in diagnostics.
    pub source: String,
    /// The file it was read from; `None` for the embedded default.
    pub path: Option<PathBuf>,
    /// The directory relative paths in it resolve against.
    pub base_dir: PathBuf,
    /// The environment variables its `${NAME}` placeholders read (secrets among them):
    /// `telltale run` removes them from its environment once the config is loaded.
    pub env_vars: Vec<String>,
}

impl LoadedConfig {
    /// Resolves a path written in the config relative to the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// How diagnostics name this config.
    pub fn display_name(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => EMBEDDED_NAME.to_string(),
        }
    }

    /// The data directory: the configured one (resolved), else the platform default.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.config.engine.data_dir {
            return self.resolve(dir);
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("telltale");
        }
        if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(home).join(".local/share/telltale");
        }
        PathBuf::from("telltale-data")
    }

    /// The database file of the durable store: `store.path`, relative to the data
    /// directory ([`LoadedConfig::data_dir`]) unless absolute.
    pub fn store_path(&self) -> PathBuf {
        self.data_dir().join(&self.config.store.path)
    }

    /// The rules directory, resolved, when one is configured.
    pub fn rules_dir(&self) -> Option<PathBuf> {
        self.config.rules.dir.as_deref().map(|d| self.resolve(d))
    }
}

/// Reads a configuration file and checks its syntax and types (see [`check`] for the rest).
pub fn load(path: &Path) -> Result<LoadedConfig, Diagnostics> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![
            Diagnostic::new(
                path,
                None,
                None,
                format!("cannot read the config file: {e}"),
            )
            .with_hint("check the path given with -c/--config"),
        ])
    })?;
    let config = parse(&source, path)?;
    let env_vars = referenced_env_vars(&source, path);
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(LoadedConfig {
        config,
        source,
        path: Some(path.to_path_buf()),
        base_dir,
        env_vars,
    })
}

/// The embedded default configuration.
pub fn embedded_default() -> LoadedConfig {
    let config = match parse(EMBEDDED_DEFAULT, Path::new(EMBEDDED_NAME)) {
        Ok(c) => c,
        // The embedded file is part of the binary and covered by a test.
        Err(e) => panic!("the embedded default config is invalid:\n{e}"),
    };
    LoadedConfig {
        config,
        source: EMBEDDED_DEFAULT.to_string(),
        path: None,
        base_dir: PathBuf::from("."),
        env_vars: referenced_env_vars(EMBEDDED_DEFAULT, Path::new(EMBEDDED_NAME)),
    }
}

/// The names of the environment variables `source`'s placeholders read.
fn referenced_env_vars(source: &str, file: &Path) -> Vec<String> {
    let names = std::cell::RefCell::new(std::collections::BTreeSet::new());
    // Only the names are wanted: whether each is set was checked by `parse`.
    let _ = env::substitute(source, file, |name| {
        names.borrow_mut().insert(name.to_string());
        Some(String::new())
    });
    names.into_inner().into_iter().collect()
}

/// Parses configuration text and checks its syntax and types; `file` is used in
/// diagnostics only. The semantic checks are [`check`]'s.
pub fn parse(source: &str, file: &Path) -> Result<Config, Diagnostics> {
    let substituted = env::substitute(source, file, |name| std::env::var(name).ok())?;
    let text = substituted.text.as_str();
    // An empty file (or only comments) is a valid, empty configuration.
    let config: Config = if text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    }) {
        Config::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| {
            let position = e.location().map(|l| {
                substituted.original_position(Position {
                    line: l.line(),
                    column: l.column(),
                })
            });
            Diagnostics(vec![yaml_diagnostic(
                file,
                source,
                position,
                &e.to_string(),
            )])
        })?
    };
    Ok(config)
}

/// Every semantic check of a configuration: what its types cannot express (values that
/// must be positive, limits that must leave room for others, names that must be unique,
/// routes that must name notifiers, …), each problem with file:line:column and a hint.
/// Nothing an operator wrote is replaced by a default: a value that cannot work is an
/// error here.
pub fn check(loaded: &LoadedConfig) -> Result<(), Diagnostics> {
    let file = loaded
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(EMBEDDED_NAME));
    let problems = semantic_problems(&loaded.config, &loaded.source, &file, &loaded.store_path());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Diagnostics(problems))
    }
}

/// The JSON Schema of the configuration file, for editors.
pub fn json_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "title".into(),
            serde_json::Value::String("Telltale configuration".into()),
        );
    }
    schema
}

/// Turns a serde_yaml message into a diagnostic with a hint.
fn yaml_diagnostic(file: &Path, source: &str, position: Option<Position>, raw: &str) -> Diagnostic {
    // serde_yaml appends " at line L column C"; the diagnostic shows the position itself.
    let message = match raw.find(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw.to_string(),
    };
    let position = position.map(|p| refine_position(source, p, &message));
    let d = Diagnostic::new(file, Some(source), position, message.clone());
    // serde_yaml puts the key path first (`engine: unknown field ...`); keep it in the message.
    if let Some(rest) = message.split_once("unknown field `").map(|(_, r)| r) {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid: Vec<&str> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| !s.is_empty())
            .collect();
        let hint = if field == "for" {
            "the hold time is written `hold:`".to_string()
        } else if let Some(best) = did_you_mean(field, valid.iter().copied()) {
            format!("did you mean `{best}`?")
        } else if valid.is_empty() {
            "remove this key".to_string()
        } else {
            format!(
                "valid keys here: {}",
                valid
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return d.with_hint(hint);
    }
    if let Some(rest) = message.split_once("missing field `").map(|(_, r)| r) {
        let field = rest.split('`').next().unwrap_or(rest);
        return d.with_hint(format!("add `{field}:` to this entry"));
    }
    if message.contains("invalid type") {
        return d.with_hint("check the value's type against `telltale config schema`");
    }
    if message.contains("did not find expected") || message.contains("mapping values") {
        return d.with_hint(
            "check the indentation and that every `key: value` pair has a space after the colon",
        );
    }
    d
}

/// serde_yaml places errors raised by a value's own parser (a bad duration, say) at the
/// start of the enclosing entry. When the message quotes the offending text and the entry
/// contains it further down, point there instead.
fn refine_position(source: &str, p: Position, message: &str) -> Position {
    let Some(quoted) = message.split('`').nth(1).filter(|q| !q.is_empty()) else {
        return p;
    };
    let lines: Vec<&str> = source.lines().collect();
    let Some(first) = lines.get(p.line.saturating_sub(1)) else {
        return p;
    };
    if first.contains(quoted) {
        return p;
    }
    let entry_indent = p.column.saturating_sub(1);
    for (i, line) in lines.iter().enumerate().skip(p.line) {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent < entry_indent && !line.trim_start().starts_with('#') {
            break;
        }
        if let Some(byte) = line.find(quoted) {
            return Position {
                line: i + 1,
                column: line[..byte].chars().count() + 1,
            };
        }
    }
    p
}

/// Semantic checks serde cannot do. Every problem is reported, not just the first.
/// `store_file` is the database file as `run` would open it.
fn semantic_problems(
    config: &Config,
    source: &str,
    file: &Path,
    store_file: &Path,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut at = |path: &[Seg], message: String, hint: &str| {
        let mut d = Diagnostic::new(file, Some(source), locate(source, path), message);
        if !hint.is_empty() {
            d = d.with_hint(hint);
        }
        out.push(d);
    };

    let e = &config.engine;
    if e.evaluation_interval.get().is_zero() {
        at(
            &[Seg::key("engine"), Seg::key("evaluation_interval")],
            "evaluation_interval must be longer than zero".into(),
            "e.g. `evaluation_interval: 5s`",
        );
    }
    if e.max_points_per_series == 0 {
        at(
            &[Seg::key("engine"), Seg::key("max_points_per_series")],
            "max_points_per_series must be at least 1".into(),
            "",
        );
    }

    // Rhai reads an operation limit of 0 as "unlimited", and a zero deadline would stop
    // every rule at its first statement: neither can be what the operator meant.
    let r = &config.rules;
    if r.max_operations == 0 {
        at(
            &[Seg::key("rules"), Seg::key("max_operations")],
            "rules.max_operations must be at least 1 (0 would remove the limit on runaway rules)"
                .into(),
            &format!(
                "remove it to use the default ({}), or give a positive number",
                RulesConfig::default().max_operations
            ),
        );
    }
    if r.timeout.get().is_zero() {
        at(
            &[Seg::key("rules"), Seg::key("timeout")],
            "rules.timeout must be longer than zero (0 would stop every rule at once)".into(),
            &format!(
                "remove it to use the default ({}), or give a duration such as `250ms`",
                humantime::format_duration(RulesConfig::default().timeout.get())
            ),
        );
    }

    if let Some(ingest) = &config.ingest {
        if ingest.limits.max_in_flight == 0 {
            at(
                &[
                    Seg::key("ingest"),
                    Seg::key("limits"),
                    Seg::key("max_in_flight"),
                ],
                "ingest.limits.max_in_flight must be at least 1 (0 would refuse every request)"
                    .into(),
                "remove it to use the default, or give a positive number",
            );
        }
        if let Some(http) = &ingest.http
            && http.max_connections == 0
        {
            at(
                &[
                    Seg::key("ingest"),
                    Seg::key("http"),
                    Seg::key("max_connections"),
                ],
                "ingest.http.max_connections must be at least 1 (0 would refuse every \
                 connection)"
                    .into(),
                "remove it to use the default, or give a positive number",
            );
        }
        let l = &ingest.limits;
        let path = |key: &'static str| [Seg::key("ingest"), Seg::key("limits"), Seg::key(key)];
        if let Some(n) = l.max_series
            && n >= e.max_series
        {
            at(
                &path("max_series"),
                format!(
                    "ingest.limits.max_series = {n} leaves no room for collectors: \
                     engine.max_series is {}",
                    e.max_series
                ),
                "keep it below engine.max_series (what is left is reserved for collectors \
                 and analyzers), or raise engine.max_series",
            );
        }
        if let Some(b) = l.max_series_bytes
            && b.0 >= e.max_series_bytes.0
        {
            at(
                &path("max_series_bytes"),
                format!(
                    "ingest.limits.max_series_bytes = {} bytes leaves no room for \
                     collectors: engine.max_series_bytes is {} bytes",
                    b.0, e.max_series_bytes.0
                ),
                "keep it below engine.max_series_bytes, or raise engine.max_series_bytes",
            );
        }
    }

    let mut instance_names = HashSet::new();
    let plugin_entries = config
        .collectors
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let e: &dyn PluginEntry = c;
            ("collectors", i, e, c.interval)
        })
        .chain(config.analyzers.iter().enumerate().map(|(i, a)| {
            let e: &dyn PluginEntry = a;
            ("analyzers", i, e, a.interval)
        }));
    for (section, i, entry, interval) in plugin_entries {
        let (name, plugin, limits) = (&entry.name().to_string(), entry.plugin(), entry.limits());
        let supervision = entry.supervision();
        let item = [Seg::key(section), Seg::Index(i)];
        if !valid_name(name) {
            at(
                &[item[0].clone(), item[1].clone(), Seg::key("name")],
                format!("invalid name `{name}`"),
                "use letters, digits, `-` and `_`",
            );
        }
        if !instance_names.insert(name.clone()) {
            at(
                &[item[0].clone(), item[1].clone(), Seg::key("name")],
                format!("the name `{name}` is used twice"),
                "collector and analyzer names must be unique",
            );
        }
        if plugin.trim().is_empty() {
            at(
                &[item[0].clone(), item[1].clone(), Seg::key("plugin")],
                "`plugin` is empty".into(),
                "name a standard plugin (e.g. `system`) or a .wasm file",
            );
        }
        if interval.get().is_zero() {
            at(
                &[item[0].clone(), item[1].clone(), Seg::key("interval")],
                "interval must be longer than zero".into(),
                "e.g. `interval: 10s`",
            );
        }
        if limits.timeout.get().is_zero() {
            at(
                &[
                    item[0].clone(),
                    item[1].clone(),
                    Seg::key("limits"),
                    Seg::key("timeout"),
                ],
                "timeout must be longer than zero".into(),
                "",
            );
        }
        if limits.memory.0 < (1 << 20) {
            at(
                &[
                    item[0].clone(),
                    item[1].clone(),
                    Seg::key("limits"),
                    Seg::key("memory"),
                ],
                format!("memory limit of {} bytes is too small", limits.memory.0),
                "a plugin needs at least 1MiB; the default is 64MiB",
            );
        }
        if supervision.max_backoff.get() < supervision.initial_backoff.get() {
            at(
                &[
                    item[0].clone(),
                    item[1].clone(),
                    Seg::key("supervision"),
                    Seg::key("max_backoff"),
                ],
                format!(
                    "max_backoff ({}) is shorter than initial_backoff ({})",
                    supervision.max_backoff, supervision.initial_backoff
                ),
                "the wait doubles from initial_backoff up to max_backoff: raise max_backoff \
                 or lower initial_backoff",
            );
        }
    }
    for (i, a) in config.analyzers.iter().enumerate() {
        if a.inputs.is_empty() {
            at(
                &[Seg::key("analyzers"), Seg::Index(i), Seg::key("inputs")],
                format!("analyzer `{}` has no inputs", a.name),
                "list the series to analyze, e.g. `inputs: [system_cpu_usage_percent]`",
            );
        }
    }

    store::check(config, source, store_file, &mut at);

    scalers::check(&config.scalers, &mut at);
    let notifier_names = notifiers::check(&config.notifiers, &mut at);
    for (i, r) in config.routes.iter().enumerate() {
        for (j, name) in r.notifiers.iter().enumerate() {
            if !notifier_names.contains(name.as_str()) {
                let hint = match did_you_mean(name, notifier_names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "define it under `notifiers:`".to_string(),
                };
                at(
                    &[
                        Seg::key("routes"),
                        Seg::Index(i),
                        Seg::key("notifiers"),
                        Seg::Index(j),
                    ],
                    format!("route names an unknown notifier `{name}`"),
                    &hint,
                );
            }
        }
    }
    alerting::check(config, &notifier_names, &mut at);
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The diagnostics of `src`, from parsing or from the semantic checks (shared with the
    /// notifier kinds' tests).
    pub(crate) fn err(src: &str) -> String {
        match parse_checked(src) {
            Ok(_) => panic!("expected an error in:\n{src}"),
            Err(d) => d.to_string(),
        }
    }

    /// Parses and checks `src` as the engine's builder does.
    pub(crate) fn parse_checked(src: &str) -> Result<Config, Diagnostics> {
        let config = parse(src, Path::new("t.yaml"))?;
        let loaded = LoadedConfig {
            config,
            source: src.to_string(),
            path: Some(PathBuf::from("t.yaml")),
            base_dir: PathBuf::from("."),
            env_vars: Vec::new(),
        };
        check(&loaded)?;
        Ok(loaded.config)
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = embedded_default();
        check(&c).expect("the embedded default passes the semantic checks");
        assert!(!c.config.collectors.is_empty());
        assert!(!c.config.notifiers.is_empty());
    }

    #[test]
    fn empty_file_is_default() {
        let c = parse("# nothing yet\n", Path::new("t.yaml")).unwrap();
        assert!(c.collectors.is_empty());
    }

    #[test]
    fn unknown_key_has_position_and_hint() {
        let text = err("engine:\n  retention: 1h\n  retenton: 2h\n");
        assert!(
            text.starts_with("t.yaml:3:3: error: engine: unknown field `retenton`"),
            "{text}"
        );
        assert!(text.contains("did you mean `retention`?"), "{text}");
        assert!(text.contains("3 |   retenton: 2h"), "{text}");
    }

    #[test]
    fn nested_unknown_key_and_bad_duration() {
        let text = err("collectors:\n  - name: s\n    plugin: system\n    intervall: 5s\n");
        assert!(
            text.starts_with("t.yaml:4:5: error: collectors[0]: unknown field `intervall`"),
            "{text}"
        );
        assert!(text.contains("did you mean `interval`?"), "{text}");
        let text = err("collectors:\n  - name: s\n    plugin: system\n    interval: 5 parsecs\n");
        assert!(text.contains("t.yaml:4:15"), "{text}");
        assert!(text.contains("invalid duration"), "{text}");
    }

    #[test]
    fn semantic_errors_are_located() {
        let text = err(concat!(
            "notifiers:\n",
            "  - name: ops\n",
            "    kind: webhook\n",
            "    url: htp//nowhere\n",
            "routes:\n",
            "  - notifiers: [ops, opz]\n",
        ));
        assert!(
            text.contains("t.yaml:4:5: error: webhook url `htp//nowhere`"),
            "{text}"
        );
        assert!(text.contains("unknown notifier `opz`"), "{text}");
        assert!(text.contains("did you mean `ops`?"), "{text}");
    }

    #[test]
    fn push_limits_must_leave_room_for_collectors() {
        let text = err(concat!(
            "engine:\n",
            "  max_series: 1000\n",
            "ingest:\n",
            "  limits:\n",
            "    max_series: 1000\n",
            "    max_series_bytes: 1GiB\n",
        ));
        assert!(
            text.contains(
                "t.yaml:5:5: error: ingest.limits.max_series = 1000 leaves no room for \
                 collectors: engine.max_series is 1000"
            ),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:6:5: error: ingest.limits.max_series_bytes"),
            "{text}"
        );
        assert!(
            parse(
                "ingest:\n  limits:\n    max_series: 999\n",
                Path::new("t.yaml")
            )
            .is_ok()
        );
    }

    #[test]
    fn values_that_cannot_work_are_errors_not_defaults() {
        let text = err(concat!(
            "collectors:\n",
            "  - name: a\n",
            "    plugin: system\n",
            "    supervision:\n",
            "      initial_backoff: 2s\n",
            "      max_backoff: 1s\n",
            "ingest:\n",
            "  http:\n",
            "    max_connections: 0\n",
            "  limits:\n",
            "    max_in_flight: 0\n",
        ));
        assert!(
            text.contains(
                "t.yaml:6:7: error: max_backoff (1s) is shorter than initial_backoff (2s)"
            ),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:9:5: error: ingest.http.max_connections must be at least 1"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:11:5: error: ingest.limits.max_in_flight must be at least 1"),
            "{text}"
        );
    }

    #[test]
    fn zero_rule_limits_are_errors_not_defaults() {
        let text = err("rules:\n  max_operations: 0\n  timeout: 0s\n");
        assert!(
            text.contains("t.yaml:2:3: error: rules.max_operations must be at least 1"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:3:3: error: rules.timeout must be longer than zero"),
            "{text}"
        );
        assert!(text.contains("remove it to use the default"), "{text}");
    }

    #[test]
    fn duplicate_names() {
        let text = err(concat!(
            "collectors:\n",
            "  - name: a\n",
            "    plugin: system\n",
            "  - name: a\n",
            "    plugin: system\n",
            "notifiers:\n",
            "  - name: n\n",
            "    kind: console\n",
            "  - name: n\n",
            "    kind: console\n",
        ));
        assert!(
            text.contains("t.yaml:4:5: error: the name `a` is used twice"),
            "{text}"
        );
        assert!(
            text.contains("t.yaml:9:5: error: the notifier name `n` is used twice"),
            "{text}"
        );
    }

    #[test]
    fn env_substitution_feeds_values() {
        // SAFETY of the test: a variable name no other test uses.
        unsafe { std::env::set_var("TELLTALE_TEST_HOOK_URL", "http://127.0.0.1:9/x") };
        let c = parse(
            "notifiers:\n  - name: h\n    kind: webhook\n    url: ${TELLTALE_TEST_HOOK_URL}\n    secret: ${TELLTALE_TEST_UNSET_SECRET:-whsec_AAAA}\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let NotifierKind::Webhook(w) = &c.notifiers[0].kind else {
            panic!("{:?}", c.notifiers[0].kind)
        };
        assert_eq!(w.url, "http://127.0.0.1:9/x");
        assert_eq!(w.secret.as_deref(), Some("whsec_AAAA"));
    }

    #[test]
    fn rules_defaults_are_on_unless_turned_off() {
        // No `rules` section, a `dir` alone, and `defaults: false` beside a `dir`.
        let c = parse("", Path::new("t.yaml")).unwrap();
        assert!(c.rules.defaults && c.rules.dir.is_none());
        let c = parse("rules:\n  dir: mine\n", Path::new("t.yaml")).unwrap();
        assert!(c.rules.defaults);
        assert_eq!(c.rules.dir.as_deref(), Some(Path::new("mine")));
        let c = parse(
            "rules:\n  dir: mine\n  defaults: false\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        assert!(!c.rules.defaults);
        let text = err("rules:\n  default: false\n");
        assert!(text.contains("did you mean `defaults`?"), "{text}");
        assert!(json_schema().to_string().contains("\"defaults\""));
    }

    #[test]
    fn schema_names_every_section() {
        let s = json_schema().to_string();
        for key in [
            "collectors",
            "analyzers",
            "notifiers",
            "routes",
            "store",
            "evaluation_interval",
        ] {
            assert!(s.contains(key), "{key} missing from schema");
        }
    }
}
