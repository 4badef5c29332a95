//! `telltale plugin ...`: the commands for plugin authors.
//!
//! * `new` scaffolds a plugin crate (see [`scaffold`](super::scaffold));
//! * `run` loads one plugin alone through the real [`PluginHost`] (same sandbox, limits,
//!   grant checks and on-disk compile cache as `telltale run`) and prints what it emits;
//! * `inspect` shows a component's world, contract version, imports, exports and whether
//!   this host accepts it, without running it;
//! * `list` shows the standard plugins embedded in the binary.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::{Args, Subcommand, ValueEnum};

use telltale_config::{self as config, ByteSize, GrantShape, Grants, HumanDuration, PluginLimits};
use telltale_model::{Event, Labels, Point, Sample, SeriesKey, SeriesWindow};
use telltale_plugin_host::inspect::component_header_problem;
use telltale_plugin_host::{
    Analyzer, Collector, ImportNeed, Inspection, PluginError, PluginHost, PluginKind, PluginSource,
    PluginSpec, World, contract,
};
use telltale_standard_plugins::{find_standard, standard_plugins};

use super::scaffold;

/// The `plugin` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a new plugin crate (Rust) that builds with one command and passes its test.
    New(NewArgs),
    /// Run one plugin alone and print what it emits.
    ///
    /// The plugin is loaded exactly as `telltale run` loads it (sandbox, limits, grant
    /// checks, compile cache under the data directory). A collector is called --count
    /// times, --interval apart; an analyzer is given the windows built from --input.
    Run(RunArgs),
    /// Show a component's world, contract version, imports, exports and whether this
    /// host accepts it (exits 1 when it does not), without running it.
    Inspect(InspectArgs),
    /// List the standard plugins embedded in this binary.
    List,
}

/// Which world a plugin implements, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum KindArg {
    /// `init` + `collect`: gathers samples.
    Collector,
    /// `init` + `analyze`: derives samples and events from windows of samples.
    Analyzer,
}

impl From<KindArg> for PluginKind {
    fn from(k: KindArg) -> PluginKind {
        match k {
            KindArg::Collector => PluginKind::Collector,
            KindArg::Analyzer => PluginKind::Analyzer,
        }
    }
}

/// Arguments of `plugin new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The plugin's name: lowercase letters, digits, `-` and `_` (e.g. `nginx-status`).
    /// It is the crate's name and the directory created.
    pub(crate) name: String,
    /// Which kind of plugin.
    #[arg(long, value_enum, default_value = "collector")]
    pub(crate) kind: KindArg,
    /// The directory to create the crate in (default: the current directory).
    #[arg(long, value_name = "PATH")]
    pub(crate) dir: Option<PathBuf>,
}

/// Arguments of `plugin run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A `.wasm` component file, or the name of a standard plugin (`telltale plugin list`).
    #[arg(value_name = "FILE.wasm|NAME")]
    plugin: String,
    /// The plugin's world (default: read from the component's exports).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    /// The plugin's `config` section: JSON or YAML text, or `@FILE` to read it from a file.
    #[arg(long, value_name = "JSON|YAML|@FILE")]
    config: Option<String>,
    /// Grant a capability, as in the config's `grants:`: `system`, `files=/proc`
    /// (repeatable: one prefix each), `http=HOST:PORT`, `processes`, `gpu`.
    #[arg(long = "grant", value_name = "KIND[=VALUE]")]
    grants: Vec<String>,
    /// How many calls to make.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// The pause between calls.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,
    /// Print JSON lines (one object per sample or event) instead of tables.
    #[arg(long)]
    json: bool,
    /// The per-call deadline (`limits.timeout`; default as in the config).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// The memory cap (`limits.memory`, e.g. `64MiB`; default as in the config).
    #[arg(long, value_parser = ByteSize::parse)]
    memory: Option<ByteSize>,
    /// Analyzers: JSON lines of samples (`{"name":..,"labels":{..},"value":..,"timestamp_ms":..}`,
    /// what `plugin run --json` prints), grouped into one window per series; `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// Arguments of `plugin inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The component file.
    #[arg(value_name = "FILE.wasm")]
    file: PathBuf,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}` ({e}); write it like `500ms`, `2s`, `1m`"))
}

/// Runs a `plugin` subcommand.
pub(crate) fn main(command: PluginCommand) -> ExitCode {
    let result = match command {
        PluginCommand::New(args) => scaffold::new_plugin(&args),
        PluginCommand::Run(args) => run(args),
        PluginCommand::Inspect(args) => inspect(&args),
        PluginCommand::List => {
            list();
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The failure of a command: the message printed after `error: `.
type CmdResult = Result<ExitCode, String>;

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// A host with the same on-disk compile cache as `telltale run` without a config
/// (`<data dir>/cache`).
fn host() -> Result<PluginHost, String> {
    let cache = config::embedded_default().data_dir().join("cache");
    PluginHost::new(Some(cache)).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// plugin list

fn list() {
    let rows: Vec<[String; 4]> = standard_plugins()
        .iter()
        .map(|p| {
            [
                p.name.to_string(),
                p.kind.to_string(),
                format_size(p.wasm.len() as u64),
                p.description.to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "KIND", "SIZE", "DESCRIPTION"], &rows);
}

fn format_size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.0} KiB", (n as f64 / 1024.0).ceil())
    }
}

/// Prints rows under a header, columns padded to their widest cell; the last column is
/// not padded.
fn print_table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header));
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(out, "{}", line(&cells));
    }
}

// ---------------------------------------------------------------------------------------
// plugin inspect

fn inspect(args: &InspectArgs) -> CmdResult {
    let wasm = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let origin = args.file.display().to_string();
    if let Some(problem) = component_header_problem(&wasm) {
        return Err(format!("{origin} is {problem}"));
    }
    let rt = runtime()?;
    let host = host()?;
    let report = rt.block_on(host.inspect(wasm, &origin));
    super::stop_runtime(rt);
    let report = report.map_err(|e| match e {
        PluginError::Compile { message, .. } => format!(
            "{origin} is not a WebAssembly component this host can compile: {message}\n\
                 hint: build plugins with `cargo build --release --target wasm32-wasip2` \
                 (a core module from wasm32-unknown-unknown or wasm32-wasip1 is not a component)"
        ),
        other => other.to_string(),
    })?;
    print!("{}", render_inspection(&origin, &report));
    Ok(if report.accepted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The text `plugin inspect` prints.
fn render_inspection(origin: &str, r: &Inspection) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "file:      {origin}");
    let _ = writeln!(
        s,
        "size:      {} bytes ({})",
        r.size,
        format_size(r.size as u64)
    );
    let _ = writeln!(s, "sha256:    {}", r.sha256);
    let world = match r.kind {
        Some(k) => k.to_string(),
        None => format!(
            "unknown (exports {})",
            neither(contract::WORLDS.iter().map(|w| format!("`{}`", w.call)))
        ),
    };
    let _ = writeln!(s, "world:     {world}");
    let contract = if r.contract_versions.is_empty() {
        "none (imports nothing from telltale:plugin)".to_string()
    } else {
        r.contract_versions
            .iter()
            .map(|v| format!("telltale:plugin@{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(s, "contract:  {contract}");
    let width = r
        .imports
        .iter()
        .map(|i| i.name.len())
        .chain(r.exports.iter().map(|e| e.name.len()))
        .max()
        .unwrap_or(0);
    let _ = writeln!(s, "imports:");
    if r.imports.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for i in &r.imports {
        let need = match &i.need {
            ImportNeed::Nothing => "contract, always available".to_string(),
            ImportNeed::Grant { yaml, name } => {
                format!(
                    "needs grant `{yaml}` (plugin run: --grant {})",
                    grant_flag(name)
                )
            }
            ImportNeed::Wasi => "wasi, sandboxed (no files, network or environment)".to_string(),
            ImportNeed::UnknownContract => "not provided by this host".to_string(),
            ImportNeed::Unknown => "unknown: not provided by this host".to_string(),
        };
        let _ = writeln!(s, "  {:<width$}  {need}", i.name);
    }
    let _ = writeln!(s, "exports:");
    if r.exports.is_empty() {
        let _ = writeln!(s, "  (none)");
    }
    for e in &r.exports {
        let _ = writeln!(s, "  {:<width$}  {}", e.name, e.item);
    }
    let grants = r.grants_needed();
    let _ = writeln!(
        s,
        "grants:    {}",
        if grants.is_empty() {
            "none".to_string()
        } else {
            grants.join(", ")
        }
    );
    if r.accepted() {
        let _ = writeln!(
            s,
            "accepted:  yes, by this host (telltale {})",
            env!("CARGO_PKG_VERSION")
        );
    } else {
        let _ = writeln!(s, "accepted:  no, this host refuses it:");
        for p in &r.problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    s
}

/// "neither A nor B" (or "none of A, B, C"), for what fits no world of the contract.
fn neither(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.collect();
    match items.as_slice() {
        [a, b] => format!("neither {a} nor {b}"),
        all => format!("none of {}", all.join(", ")),
    }
}

/// `--grant` form of a grant: `system`, `files=/some/dir`.
fn grant_flag(name: &str) -> String {
    match config::grant(name) {
        Some(g) => g.flag(),
        None => format!("{name}=VALUE"),
    }
}

// ---------------------------------------------------------------------------------------
// --grant parsing

/// Turns `--grant` arguments into [`Grants`]; relative `files` prefixes resolve against
/// `cwd`. The grants and their shapes come from the config's table (`config::GRANTS`), so a
/// grant added there works here without touching this file:
///
/// | config (`grants:`)              | command line                             | shape |
/// |---------------------------------|------------------------------------------|-------|
/// | `system: true`                  | `--grant system`                         | flag  |
/// | `files: [/proc, /sys]`          | `--grant files=/proc --grant files=/sys` | list  |
/// | `http: ["127.0.0.1:9100"]`      | `--grant http=127.0.0.1:9100`            | list  |
fn parse_grants(args: &[String], cwd: &Path) -> Result<Grants, String> {
    let known = || {
        config::GRANTS
            .iter()
            .map(|g| g.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut map = serde_json::Map::new();
    for arg in args {
        let (name, value) = match arg.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (arg.trim(), None),
        };
        let grant = config::grant(name).ok_or_else(|| {
            format!(
                "unknown grant `{name}` in `--grant {arg}`; known grants: {}",
                known()
            )
        })?;
        match (grant.shape, value) {
            (GrantShape::Flag, None | Some("true")) => {
                map.insert(name.to_string(), serde_json::Value::Bool(true));
            }
            (GrantShape::Flag, Some(v)) => {
                return Err(format!(
                    "`--grant {arg}`: `{name}` takes no value (`{v}`); write `--grant {name}`"
                ));
            }
            (GrantShape::List, None | Some("")) => {
                return Err(format!(
                    "`--grant {arg}`: `{name}` needs a value, e.g. `--grant {}`",
                    grant.flag()
                ));
            }
            (GrantShape::List, Some(v)) => {
                let v = if name == "files" && Path::new(v).is_relative() {
                    cwd.join(v).display().to_string()
                } else {
                    v.to_string()
                };
                let entry = map
                    .entry(name.to_string())
                    .or_insert_with(|| serde_json::Value::Array(Vec::new()));
                if let serde_json::Value::Array(items) = entry {
                    items.push(serde_json::Value::String(v));
                }
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| format!("invalid --grant: {e}; known grants: {}", known()))
}

/// Turns the `--config` argument into the JSON passed to `init` (`null` without one).
fn parse_config_arg(arg: Option<&str>) -> Result<String, String> {
    let Some(arg) = arg else {
        return Ok("null".to_string());
    };
    let (text, from) = match arg.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --config {path}: {e}"))?,
            format!(" in {path}"),
        ),
        None => (arg.to_string(), String::new()),
    };
    // YAML is (nearly) a superset of JSON: one parser takes both.
    let value: serde_json::Value = serde_yaml::from_str(&text)
        .map_err(|e| format!("--config{from} is neither JSON nor YAML: {e}"))?;
    Ok(value.to_string())
}

// ---------------------------------------------------------------------------------------
// plugin run

/// What one call produced.
struct CallOutput {
    samples: Vec<Sample>,
    events: Vec<Event>,
    took: Duration,
}

/// How `plugin run` calls a plugin: `count` times, `interval` apart, printing each call.
struct Calls {
    count: u32,
    interval: Duration,
    json: bool,
}

impl Calls {
    /// Loads the plugin as a `W` and calls it with `input()` each time; `output` turns what
    /// a call returns into the samples and events printed.
    async fn run<W: World>(
        &self,
        host: &PluginHost,
        spec: PluginSpec,
        input: impl Fn() -> W::Input,
        output: impl Fn(W::Output) -> (Vec<Sample>, Vec<Event>),
    ) -> Result<(), PluginError> {
        let mut stdout = std::io::stdout();
        let mut plugin = host.load::<W>(spec).await?;
        for call in 1..=self.count {
            if call > 1 {
                tokio::time::sleep(self.interval).await;
            }
            let started = Instant::now();
            let (samples, events) = output(plugin.call(input()).await?);
            let out = CallOutput {
                samples,
                events,
                took: started.elapsed(),
            };
            print_call(&mut stdout, call, self.count, &out, self.json);
        }
        Ok(())
    }
}

fn run(args: RunArgs) -> CmdResult {
    super::init_logging("info");
    let cwd = std::env::current_dir().map_err(|e| format!("no current directory: {e}"))?;
    let grants = parse_grants(&args.grants, &cwd)?;
    let config_json = parse_config_arg(args.config.as_deref())?;
    let mut limits = PluginLimits::default();
    if let Some(t) = args.timeout {
        limits.timeout = HumanDuration(t);
    }
    if let Some(m) = args.memory {
        limits.memory = m;
    }

    let path = Path::new(&args.plugin);
    let file_like = path.is_file() || args.plugin.contains('/') || args.plugin.ends_with(".wasm");
    let (source, instance) = if file_like {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| args.plugin.clone());
        (PluginSource::File(cwd.join(path)), name)
    } else {
        (
            PluginSource::Standard(args.plugin.clone()),
            args.plugin.clone(),
        )
    };

    let rt = runtime()?;
    let host = host()?;
    let kind: PluginKind = match (&source, args.kind) {
        (PluginSource::Standard(name), requested) => {
            let plugin = find_standard(name).ok_or_else(|| {
                format!(
                    "there is no standard plugin `{name}` (standard plugins: {}); a plugin \
                     file must exist, end in `.wasm` or contain a `/`",
                    standard_plugins()
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            if let Some(k) = requested
                && PluginKind::from(k) != plugin.kind
            {
                return Err(format!(
                    "the standard plugin `{name}` is a {}, not a {}",
                    plugin.kind,
                    PluginKind::from(k)
                ));
            }
            plugin.kind
        }
        (PluginSource::File(_), Some(k)) => k.into(),
        (PluginSource::File(file), None) => {
            let wasm =
                std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let origin = file.display().to_string();
            if let Some(problem) = component_header_problem(&wasm) {
                return Err(format!("{origin} is {problem}"));
            }
            let report = rt
                .block_on(host.inspect(wasm, &origin))
                .map_err(|e| e.to_string())?;
            report.kind.ok_or_else(|| {
                let kinds = contract::WORLDS.iter().map(|w| {
                    let article = if w.name.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    };
                    format!("{article} {}", w.kind)
                });
                format!(
                    "{origin} is {}: {}\n\
                     hint: `telltale plugin inspect {origin}` shows what it imports and exports",
                    neither(kinds),
                    report.problems.join("; ")
                )
            })?
        }
    };

    let windows = match kind {
        PluginKind::Analyzer => Some(read_windows(args.input.as_deref())?),
        PluginKind::Collector => {
            if args.input.is_some() {
                return Err("--input is for analyzers; a collector gathers its own samples".into());
            }
            None
        }
    };

    let spec = PluginSpec {
        instance,
        source,
        config_json,
        grants,
        limits,
    };
    let calls = Calls {
        count: args.count.max(1),
        interval: args.interval,
        json: args.json,
    };
    // The world is known only now, at run time: pick the instance type, its input and how
    // its output prints; the calling is the same for every world.
    let result = rt.block_on(async move {
        match kind {
            PluginKind::Collector => {
                calls
                    .run::<Collector>(&host, spec, || (), |samples| (samples, Vec::new()))
                    .await
            }
            PluginKind::Analyzer => {
                let windows = windows.unwrap_or_default();
                calls
                    .run::<Analyzer>(&host, spec, || windows.clone(), |output| output)
                    .await
            }
        }
    });
    super::stop_runtime(rt);
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(with_cli_hint(&e)),
    }
}

/// The error message, plus how to fix it on this command line where that differs from the
/// config file's way.
fn with_cli_hint(e: &PluginError) -> String {
    match e {
        PluginError::NotGranted { interface, .. } => {
            // `telltale:plugin/files` → the grant of the `files` interface.
            let interface = interface.rsplit('/').next().unwrap_or(interface);
            match contract::grant_for(interface) {
                Some(g) => format!(
                    "{e}\nhint: with `telltale plugin run`, add `--grant {}`",
                    g.flag()
                ),
                None => e.to_string(),
            }
        }
        PluginError::Timeout { .. } => {
            format!("{e}\nhint: `--timeout` raises the deadline (e.g. `--timeout 10s`)")
        }
        PluginError::MemoryLimit { .. } => {
            format!("{e}\nhint: `--memory` raises the cap (e.g. `--memory 256MiB`)")
        }
        PluginError::InvalidConfig { .. } => {
            format!(
                "{e}\nhint: pass the plugin's config with `--config '{{...}}'` or `--config @FILE`"
            )
        }
        _ => e.to_string(),
    }
}

/// Reads `--input`: JSON lines of samples, grouped into one window per series (points
/// sorted by time). Lines of events (`"type":"event"`), blank lines and `#` comments are
/// skipped, so the output of `plugin run --json` can be fed back in.
fn read_windows(input: Option<&Path>) -> Result<Vec<SeriesWindow>, String> {
    let Some(input) = input else {
        return Err(
            "an analyzer needs input windows: pass `--input FILE` with JSON lines of \
                    samples, e.g. the output of `telltale plugin run system --grant system \
                    --grant files=/proc --grant files=/sys --count 5 --interval 1s --json \
                    > samples.jsonl`"
                .to_string(),
        );
    };
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(input)
            .map_err(|e| format!("cannot read --input {}: {e}", input.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    #[derive(serde::Deserialize)]
    struct InputLine {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        name: String,
        #[serde(default)]
        labels: Labels,
        #[serde(default)]
        value: Option<f64>,
        #[serde(default)]
        timestamp_ms: Option<i64>,
    }
    let mut series: BTreeMap<SeriesKey, Vec<Point>> = BTreeMap::new();
    let now = telltale_model::now_ms();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read --input {}: {e}", input.display()))?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", input.display(), i + 1);
        let parsed: InputLine =
            serde_json::from_str(trimmed).map_err(|e| format!("{}: {e}", at()))?;
        if parsed.kind.as_deref().is_some_and(|k| k != "sample") {
            continue;
        }
        if parsed.name.is_empty() {
            return Err(format!("{}: a sample needs a `name`", at()));
        }
        let value = parsed
            .value
            .ok_or_else(|| format!("{}: sample `{}` has no numeric `value`", at(), parsed.name))?;
        series
            .entry(SeriesKey {
                name: parsed.name.into(),
                labels: parsed.labels,
            })
            .or_default()
            .push(Point {
                timestamp_ms: parsed.timestamp_ms.unwrap_or(now),
                value,
            });
    }
    Ok(series
        .into_iter()
        .map(|(key, mut points)| {
            points.sort_by_key(|p| p.timestamp_ms);
            SeriesWindow { key, points }
        })
        .collect())
}

fn format_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        Err(_) => ms.to_string(),
    }
}

fn format_labels(labels: &Labels) -> String {
    let mut s = String::new();
    let _ = telltale_model::write_labels(&mut s, labels);
    s
}

fn print_call(out: &mut impl Write, call: u32, count: u32, o: &CallOutput, json: bool) {
    if json {
        for s in &o.samples {
            let line = serde_json::json!({
                "type": "sample",
                "call": call,
                "name": s.name,
                "labels": s.labels,
                "value": s.value,
                "timestamp_ms": s.timestamp_ms,
            });
            let _ = writeln!(out, "{line}");
        }
        for e in &o.events {
            let line = serde_json::json!({
                "type": "event",
                "call": call,
                "kind": e.kind,
                "severity": e.severity,
                "message": e.message,
                "labels": e.labels,
                "timestamp_ms": e.timestamp_ms,
            });
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        return;
    }
    let events = if o.events.is_empty() {
        String::new()
    } else {
        format!(", {} event(s)", o.events.len())
    };
    let _ = writeln!(
        out,
        "call {call}/{count}: {} sample(s){events} in {:.2} ms",
        o.samples.len(),
        o.took.as_secs_f64() * 1000.0
    );
    let _ = out.flush();
    if !o.samples.is_empty() {
        let rows: Vec<[String; 4]> = o
            .samples
            .iter()
            .map(|s| {
                [
                    s.name.to_string(),
                    format_labels(&s.labels),
                    s.value.to_string(),
                    format_time(s.timestamp_ms),
                ]
            })
            .collect();
        print_table(&["NAME", "LABELS", "VALUE", "TIME"], &rows);
    }
    if !o.events.is_empty() {
        let rows: Vec<[String; 5]> = o
            .events
            .iter()
            .map(|e| {
                [
                    e.kind.clone(),
                    e.severity.to_string(),
                    format_labels(&e.labels),
                    format_time(e.timestamp_ms),
                    e.message.clone(),
                ]
            })
            .collect();
        print_table(&["EVENT", "SEVERITY", "LABELS", "TIME", "MESSAGE"], &rows);
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_parse_generically() {
        let cwd = Path::new("/work");
        let g = parse_grants(
            &["system".into(), "files=/proc".into(), "files=data".into()],
            cwd,
        )
        .unwrap();
        assert!(g.system);
        assert_eq!(
            g.files,
            vec![PathBuf::from("/proc"), PathBuf::from("/work/data")]
        );
        // `gpu` is picked up from the schema like every other flag.
        assert!(parse_grants(&["gpu".into()], cwd).unwrap().gpu);
        let e = parse_grants(&["teleport".into()], cwd).unwrap_err();
        assert!(e.contains("unknown grant `teleport`"), "{e}");
        assert!(e.contains("system") && e.contains("files"), "{e}");
        let e = parse_grants(&["files".into()], cwd).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
        let e = parse_grants(&["system=/x".into()], cwd).unwrap_err();
        assert!(e.contains("takes no value"), "{e}");
    }

    #[test]
    fn config_takes_json_yaml_and_files() {
        assert_eq!(parse_config_arg(None).unwrap(), "null");
        assert_eq!(parse_config_arg(Some(r#"{"a": 1}"#)).unwrap(), r#"{"a":1}"#);
        assert_eq!(
            parse_config_arg(Some("a: 1\nb: [x]")).unwrap(),
            r#"{"a":1,"b":["x"]}"#
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "per_core: true\n").unwrap();
        let arg = format!("@{}", f.display());
        assert_eq!(
            parse_config_arg(Some(&arg)).unwrap(),
            r#"{"per_core":true}"#
        );
        assert!(parse_config_arg(Some("@/nonexistent/x")).is_err());
        assert!(parse_config_arg(Some("a: [")).is_err());
    }

    #[test]
    fn input_lines_become_sorted_windows() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.jsonl");
        std::fs::write(
            &f,
            concat!(
                "# comment\n",
                r#"{"name":"x","labels":{"a":"1"},"value":2,"timestamp_ms":20}"#,
                "\n",
                r#"{"type":"sample","name":"x","labels":{"a":"1"},"value":1,"timestamp_ms":10}"#,
                "\n\n",
                r#"{"type":"event","kind":"k","message":"m"}"#,
                "\n",
                r#"{"name":"y","value":5}"#,
                "\n"
            ),
        )
        .unwrap();
        let w = read_windows(Some(&f)).unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].key.name, "x");
        assert_eq!(
            w[0].points.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![1.0, 2.0]
        );
        assert_eq!(w[1].key.name, "y");
        std::fs::write(&f, "{\"name\":\"x\"}\n").unwrap();
        let e = read_windows(Some(&f)).unwrap_err();
        assert!(
            e.contains("in.jsonl:1") && e.contains("no numeric `value`"),
            "{e}"
        );
        assert!(read_windows(None).unwrap_err().contains("--input"));
    }
}
