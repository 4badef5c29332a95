//! The WebAssembly plugin host: loads plugin components of every world of the contract
//! (collectors, analyzers), sandboxes them, and calls them under limits.
//!
//! ```text
//! PluginSpec ──PluginHost::load::<W>──▶ compile (cache.rs) ──▶ check imports and grants
//!   (capabilities.rs) ──▶ InstancePre ──▶ instantiate + init ──▶ PluginInstance<W>
//!   ──call(W::Input)──▶ W::Output, checked (Collector: samples; Analyzer: samples, events)
//! ```
//!
//! * **One path for every world.** Loading, the sandbox, limits, re-instantiation and the
//!   instance type are written once, generic over a [`World`] (`world.rs`); a world says
//!   only what differs (its bindings, its call, its input and output, how the output is
//!   checked). The contract's names and versions are in [`contract`], the grants in
//!   `telltale_config::GRANTS`.
//! * **Sandbox.** A plugin gets no WASI preopens, environment, arguments or sockets; its
//!   only capabilities are the host imports of the WIT contract (`sdk/wit/plugin.wit`):
//!   `host` (log, clock) always; `system`, `files`, `http`, `processes` and `gpu` only when its
//!   config entry grants them (`capabilities.rs`, `http.rs`, `processes.rs`, `gpu.rs`). A component
//!   importing an ungranted interface, an interface the host does not provide, or another
//!   contract version than `0.3.x` is refused at load time with the fix in the message.
//! * **Limits** (`limits:` of its entry): all linear memories together are capped
//!   (`limits.rs`); every call (and instantiate + `init`) has a wall-clock deadline enforced
//!   by epoch interruption: the guest yields to tokio every 10 ms tick and is stopped when
//!   the deadline passes, so a spinning plugin never blocks a worker thread. Returned
//!   samples and events are capped in number and size (`limits.max_*`) and must have valid
//!   names. The host's copy of a returned batch is bounded because the guest could only
//!   build it inside its capped memory; what it names can be larger (samples share label
//!   ranges, spans overlap), so the series new to the host in one call are capped at the
//!   plugin's memory limit too (`convert.rs`).
//! * **Output shape.** A collector returns one `sample-batch` (contract 0.3): one text
//!   and columns of numbers, which wasmtime lifts in bulk. Every span is bounds- and
//!   UTF-8-checked. A batch whose text and span columns equal the previous call's takes
//!   that call's series whole (only values and timestamps differ); otherwise samples are
//!   converted through a per-instance cache of the series seen before (`convert.rs`), so
//!   a repeated series costs a hash and a lookup instead of checks and a new label map.
//! * **Recovery.** A trap, a missed deadline, the memory cap or a broken output limit
//!   discards the instance; its store is dropped and the next call instantiates again from
//!   the `InstancePre` (about 20 µs) and re-runs `init`.
//! * **Compile once.** Components are compiled once per process and, with a cache
//!   directory, once per machine (`cache.rs`).
//! * **Output.** The guest's stdout/stderr are captured (`limits.max_output_bytes` per call)
//!   and forwarded to the log with the instance's name after each call, as are its
//!   `host.log` lines.
//!
//! Standard plugins are embedded in the binary (`telltale-standard-plugins`); others are `.wasm`
//! files named in the config.

mod bindings;
mod cache;
mod capabilities;
pub mod contract;
mod convert;
mod error;
mod file_read;
mod gpu;
#[cfg(test)]
mod hostile_tests;
mod http;
pub mod inspect;
mod instance;
mod limits;
mod output;
mod processes;
#[cfg(test)]
mod tests;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use telltale_config::{Grants, PluginEntry, PluginLimits};
use telltale_standard_plugins::{find_standard, standard_plugins};

pub use cache::CacheStats;
pub use error::PluginError;
pub use inspect::{ImportNeed, Inspection};
pub use telltale_model::PluginKind;
pub use world::{Analyzer, Collector, World};

use cache::{ComponentCache, LoadError, WasmSource};
use capabilities::{Capabilities, Samplers};
use convert::{OutputError, OutputLimits};
use instance::{EpochTicker, Runner, RunnerParts, StoreState};

/// Where a plugin's component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A standard plugin embedded in the binary, by name (`system`, `window-stats`).
    Standard(String),
    /// A `.wasm` component file.
    File(PathBuf),
}

impl PluginSource {
    /// Interprets a config entry's `plugin:` value: a name without `/` that does not end in
    /// `.wasm` is a standard plugin; anything else is a file, relative paths resolving
    /// against `base_dir` (the directory of the config file).
    pub fn parse(plugin: &str, base_dir: &Path) -> PluginSource {
        if !plugin.contains('/') && !plugin.ends_with(".wasm") {
            PluginSource::Standard(plugin.to_string())
        } else {
            PluginSource::File(base_dir.join(plugin))
        }
    }
}

/// Everything needed to load one plugin instance.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The instance's configured name (in every log line and error).
    pub instance: String,
    /// Where the component comes from.
    pub source: PluginSource,
    /// The entry's `config` section as JSON, passed to `init` (`null` when absent).
    pub config_json: String,
    /// Capabilities granted to the instance (file prefixes already absolute).
    pub grants: Grants,
    /// Memory cap, per-call deadline and output caps.
    pub limits: PluginLimits,
}

impl PluginSpec {
    /// The spec of a config entry of any world; relative paths (plugin file, granted file
    /// prefixes) resolve against `base_dir`, the config file's directory. An entry without
    /// `grants:` (an analyzer) is granted nothing.
    pub fn new(entry: &impl PluginEntry, base_dir: &Path) -> PluginSpec {
        let mut grants = entry.grants().cloned().unwrap_or_default();
        for prefix in &mut grants.files {
            if prefix.is_relative() {
                *prefix = base_dir.join(&*prefix);
            }
        }
        PluginSpec {
            instance: entry.name().to_string(),
            source: PluginSource::parse(entry.plugin(), base_dir),
            config_json: entry.config().to_string(),
            grants,
            limits: entry.limits().clone(),
        }
    }
}

/// Loads plugins of every world. Cheap to clone (shared inside): one wasmtime engine with
/// epoch interruption, its ticker thread, a linker per world, the component cache and the
/// samplers that `system.snapshot` and `processes.list` read.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    /// One per world of [`contract::WORLDS`], in that order.
    linkers: Vec<WorldLinker>,
    cache: ComponentCache,
    samplers: Samplers,
    ticker: Arc<EpochTicker>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.inner.cache.stats())
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host caching compiled components under `cache_dir` (created if missing), or only
    /// in memory without one.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginHost, PluginError> {
        let engine_err = |e: wasmtime::Error| PluginError::Engine {
            message: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(engine_err)?;
        // Every world the host runs; the test `every_world_has_a_linker` keeps this list
        // in step with `contract::WORLDS`.
        let linkers = vec![
            WorldLinker::new::<Collector>(&engine).map_err(engine_err)?,
            WorldLinker::new::<Analyzer>(&engine).map_err(engine_err)?,
        ];

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| PluginError::CacheDir {
                path: dir.clone(),
                source,
            })?;
        }
        let ticker = EpochTicker::start(&engine).map_err(|e| PluginError::Engine {
            message: format!("cannot start the epoch thread: {e}"),
        })?;
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                cache: ComponentCache::new(engine.clone(), cache_dir),
                engine,
                linkers,
                samplers: Samplers::new(),
                ticker: Arc::new(ticker),
            }),
        })
    }

    /// Where component loads were served from so far (compiled, disk cache, memory).
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Forgets the components this process has compiled or mapped (the cache directory is
    /// kept): the next load of each plugin reads its `.cwasm` file again, or compiles it
    /// without a cache directory. Running instances are unaffected. The benchmarks use it
    /// to measure a start from the disk cache without building a new host each time.
    pub fn clear_memory_cache(&self) {
        self.inner.cache.forget_loaded();
    }

    /// Loads a plugin of world `W`: compiles it (through the cache), checks its imports
    /// against its grants and its exports against the world, instantiates it and runs
    /// `init` under its deadline.
    pub async fn load<W: World>(&self, spec: PluginSpec) -> Result<PluginInstance<W>, PluginError> {
        let (runner, sha256) = self.runner::<W>(spec).await?;
        Ok(PluginInstance {
            runner,
            sha256,
            memo: W::Memo::default(),
        })
    }

    async fn runner<W: World>(
        &self,
        spec: PluginSpec,
    ) -> Result<(Runner<W>, [u8; 32]), PluginError> {
        let instance = spec.instance.clone();
        let (source, origin): (WasmSource, String) = match &spec.source {
            PluginSource::Standard(name) => {
                let plugin = find_standard(name).ok_or_else(|| PluginError::UnknownStandard {
                    instance: instance.clone(),
                    name: name.clone(),
                    known: standard_plugins()
                        .iter()
                        .map(|p| p.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
                let origin = format!("<standard>/{name}");
                if plugin.kind != W::KIND {
                    return Err(PluginError::Incompatible {
                        instance,
                        origin,
                        kind: W::KIND,
                        message: format!(
                            "the standard plugin `{name}` is a {}, configure it under `{}s:`",
                            plugin.kind, plugin.kind
                        ),
                    });
                }
                (WasmSource::Bytes(plugin.wasm), origin)
            }
            PluginSource::File(path) => {
                (WasmSource::File(path.clone()), path.display().to_string())
            }
        };

        // The digest lets the supervisor tell a changed file from a touched one.
        let host = Arc::clone(&self.inner);
        let (component, sha256) =
            tokio::task::spawn_blocking(move || host.cache.load_source(&source))
                .await
                .map_err(|e| PluginError::Engine {
                    message: format!("the compile task failed: {e}"),
                })?
                .map_err(|e| match (e, &spec.source) {
                    (LoadError::Read(source), PluginSource::File(path)) => PluginError::Read {
                        instance: instance.clone(),
                        path: path.clone(),
                        source,
                    },
                    (LoadError::Read(source), PluginSource::Standard(_)) => PluginError::Compile {
                        instance: instance.clone(),
                        origin: origin.clone(),
                        message: source.to_string(),
                    },
                    (LoadError::Compile(message), _) => PluginError::Compile {
                        instance: instance.clone(),
                        origin: origin.clone(),
                        message,
                    },
                })?;

        capabilities::check_imports(
            &self.inner.engine,
            &component,
            &instance,
            &origin,
            &spec.grants,
        )?;

        let incompatible = |e: wasmtime::Error| {
            capabilities::unresolved_import(&e, &instance, &origin).unwrap_or_else(|| {
                PluginError::Incompatible {
                    instance: instance.clone(),
                    origin: origin.clone(),
                    kind: W::KIND,
                    message: format!("{e:#}"),
                }
            })
        };
        let linker = self.inner.linker(W::KIND).map_err(incompatible)?;
        let instance_pre = linker
            .linker
            .instantiate_pre(&component)
            .map_err(incompatible)?;
        let pre = W::pre(instance_pre).map_err(incompatible)?;

        let caps = Capabilities::new(&instance, &spec.grants, &spec.limits, &self.inner.samplers)?;
        let mut runner = Runner::new(RunnerParts {
            instance,
            origin,
            engine: self.inner.engine.clone(),
            pre,
            caps: Arc::new(caps),
            timeout: spec.limits.timeout.get(),
            memory: spec.limits.memory.0,
            max_output: spec.limits.max_output_bytes.0,
            max_log: spec.limits.max_log_bytes.0,
            output_limits: OutputLimits::from(&spec.limits),
            config_json: spec.config_json,
            _ticker: Arc::clone(&self.inner.ticker),
        });
        runner.start().await?;
        Ok((runner, sha256))
    }
}

impl HostInner {
    /// The linker of the world of `kind`.
    fn linker(&self, kind: PluginKind) -> wasmtime::Result<&WorldLinker> {
        self.linkers
            .iter()
            .find(|l| l.world.kind == kind)
            .ok_or_else(|| {
                wasmtime::Error::msg(format!("this host has no linker for the {kind} world"))
            })
    }
}

/// The linker of one world, and what `plugin inspect` needs to know about it without the
/// world's type.
struct WorldLinker {
    world: contract::WorldInfo,
    linker: Linker<StoreState>,
    /// Whether a component links as this world: its imports resolve and its exports fit.
    links: fn(&Linker<StoreState>, &Component) -> wasmtime::Result<()>,
}

impl WorldLinker {
    fn new<W: World>(engine: &Engine) -> wasmtime::Result<WorldLinker> {
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        W::add_to_linker(&mut linker)?;
        Ok(WorldLinker {
            world: W::CONTRACT,
            linker,
            links: |linker, component| {
                W::pre(linker.instantiate_pre(component)?)?;
                Ok(())
            },
        })
    }
}

/// A loaded plugin instance of world `W` ([`Collector`], [`Analyzer`]).
pub struct PluginInstance<W: World> {
    runner: Runner<W>,
    sha256: [u8; 32],
    /// What checking the output keeps across calls and re-instantiations (a collector's
    /// series already checked); it depends only on the bytes and the limits.
    memo: W::Memo,
}

impl<W: World> PluginInstance<W> {
    /// Calls the world's export (`collect()`, `analyze(windows)`), re-instantiating first
    /// if the last call stopped the instance, and returns its checked output. Output beyond
    /// the instance's limits fails the call and discards the instance.
    pub async fn call(&mut self, input: W::Input) -> Result<W::Output, PluginError> {
        let call = W::CONTRACT.call;
        let raw = self
            .runner
            .call(call, move |exports, store| W::call(exports, store, input))
            .await?;
        let limits = self.runner.output_limits();
        W::check(raw, &limits, &mut self.memo, self.runner.instance())
            .map_err(|e| output_error(&mut self.runner, call, e))
    }

    /// The instance's configured name.
    pub fn name(&self) -> &str {
        self.runner.instance()
    }

    /// The component's file, or `<standard>/NAME`.
    pub fn origin(&self) -> &str {
        self.runner.origin()
    }

    /// Whether a healthy instance is live; false after a failure stopped it, until the
    /// next call instantiates it again.
    pub fn is_live(&self) -> bool {
        self.runner.is_live()
    }

    /// The SHA-256 of the component bytes this instance was loaded from (the `.wasm` file's
    /// content as it was read), to tell a changed plugin file from one merely touched.
    pub fn source_sha256(&self) -> [u8; 32] {
        self.sha256
    }

    /// Discards the current instance (if any) and instantiates a fresh one from the same
    /// compiled component, running `init` again, under the instance's deadline.
    pub async fn restart(&mut self) -> Result<(), PluginError> {
        self.runner.start().await
    }
}

/// Turns refused output into the error to report; a broken limit also discards the instance
/// (a plugin flooding the host is misbehaving, like one that traps).
fn output_error<W: World>(
    runner: &mut Runner<W>,
    call: &'static str,
    e: OutputError,
) -> PluginError {
    let instance = runner.instance().to_string();
    match e {
        OutputError::Limit(message) => {
            runner.discard();
            PluginError::LimitExceeded {
                instance,
                call,
                message,
            }
        }
        OutputError::Invalid(message) => PluginError::InvalidOutput {
            instance,
            call,
            message,
        },
    }
}
