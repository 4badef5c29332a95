//! The worlds of the contract as the host drives them. Everything about running a plugin
//! (loading, sandbox, limits, re-instantiation, the instance type) is written once, generic
//! over a [`World`]; a world is one impl of it saying what differs: its generated bindings
//! (how to link, pre-instantiate, instantiate and `init`), the export it calls with what
//! input, and how what that returns is checked. A new world (notifier plugins, say) is a
//! `bindgen!` module in `bindings.rs`, one entry in [`crate::contract::WORLDS`] (and a
//! `PluginKind` variant in `telltale-model`), one in the host's list of linkers
//! (`PluginHost::new`) and one impl here; the engine then runs it with one `Role` impl
//! (when to call it, where its output goes) and one line in `pipeline::plugins::configured`.

use std::future::Future;

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use telltale_model::{Event, PluginKind, Sample, SeriesWindow};

use super::bindings::{analyzer, collector, types};
use super::contract::{self, WorldInfo};
use super::convert::{self, OutputError, OutputLimits, SeriesCache};
use super::instance::{CallFuture, StoreState};

/// A world of the plugin contract: what one call of its plugins takes and returns.
///
/// Implemented by [`Collector`] and [`Analyzer`] only (the host-side plumbing is in a
/// sealed supertrait); code elsewhere is generic over it, as in
/// `PluginHost::load::<W>()` returning a `PluginInstance<W>`.
pub trait World: Binding {
    /// The world's names in the contract.
    const CONTRACT: WorldInfo;
    /// The kind of plugin it makes.
    const KIND: PluginKind = Self::CONTRACT.kind;
    /// What one call takes.
    type Input: Send + 'static;
    /// What one call returns, checked against the instance's limits.
    type Output: Send + 'static;
}

/// The `collector` world: `collect()` takes nothing and returns samples.
#[derive(Debug)]
pub enum Collector {}

/// The `analyzer` world: `analyze(windows)` returns derived samples and events (the events
/// attributed to the instance).
#[derive(Debug)]
pub enum Analyzer {}

pub(crate) use sealed::Binding;

mod sealed {
    use super::*;

    /// How the host links, instantiates and calls one world, and checks its output: the
    /// part of a [`World`] that names wasmtime and the generated bindings. Public only
    /// in name (this module is private), so no other crate can implement [`World`].
    pub trait Binding: Sized + Send + Sync + 'static {
        /// A live instance's exports (the `bindgen!` world type).
        type Exports: Send + Sync + 'static;
        /// The component pre-instantiated against this world.
        type Pre: Send + Sync + 'static;
        /// What the call returns before it is checked (the WIT type).
        type Raw: Send + 'static;
        /// What the output check keeps per instance, across calls and re-instantiations
        /// (it depends only on the component and the limits).
        type Memo: Default + Send + 'static;

        /// Adds the world's imports (besides WASI) to `linker`.
        fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()>;
        /// Checks the component's exports against the world.
        fn pre(instance_pre: InstancePre<StoreState>) -> wasmtime::Result<Self::Pre>;
        /// Instantiates into `store`.
        fn instantiate<'a>(
            pre: &'a Self::Pre,
            store: &'a mut Store<StoreState>,
        ) -> impl Future<Output = wasmtime::Result<Self::Exports>> + Send + 'a;
        /// Calls the export `init`.
        fn init<'a>(
            exports: &'a Self::Exports,
            store: &'a mut Store<StoreState>,
            config: &'a str,
        ) -> CallFuture<'a, ()>;
        /// Starts one call of the world's export (`collect`, `analyze`) with `input`.
        fn call<'a>(
            exports: &'a Self::Exports,
            store: &'a mut Store<StoreState>,
            input: <Self as World>::Input,
        ) -> CallFuture<'a, Self::Raw>
        where
            Self: World;
        /// Checks and converts what the call returned; `instance` is the instance's name.
        fn check(
            raw: Self::Raw,
            limits: &OutputLimits,
            memo: &mut Self::Memo,
            instance: &str,
        ) -> Result<<Self as World>::Output, OutputError>
        where
            Self: World;
    }
}

impl World for Collector {
    const CONTRACT: WorldInfo = contract::COLLECTOR;
    type Input = ();
    type Output = Vec<Sample>;
}

impl Binding for Collector {
    type Exports = collector::FullCollector;
    type Pre = collector::FullCollectorPre<StoreState>;
    type Raw = types::SampleBatch;
    /// The series this instance returned before, already checked (see [`SeriesCache`]).
    type Memo = SeriesCache;

    fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
        collector::FullCollector::add_to_linker::<_, HasSelf<StoreState>>(linker, |s| s)
    }

    fn pre(instance_pre: InstancePre<StoreState>) -> wasmtime::Result<Self::Pre> {
        collector::FullCollectorPre::new(instance_pre)
    }

    fn instantiate<'a>(
        pre: &'a Self::Pre,
        store: &'a mut Store<StoreState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Exports>> + Send + 'a {
        pre.instantiate_async(store)
    }

    fn init<'a>(
        exports: &'a Self::Exports,
        store: &'a mut Store<StoreState>,
        config: &'a str,
    ) -> CallFuture<'a, ()> {
        Box::pin(exports.call_init(store, config))
    }

    fn call<'a>(
        exports: &'a Self::Exports,
        store: &'a mut Store<StoreState>,
        (): (),
    ) -> CallFuture<'a, Self::Raw> {
        Box::pin(exports.call_collect(store))
    }

    fn check(
        batch: Self::Raw,
        limits: &OutputLimits,
        series: &mut SeriesCache,
        _instance: &str,
    ) -> Result<Vec<Sample>, OutputError> {
        convert::samples_from_batch(batch, limits, series)
    }
}

impl World for Analyzer {
    const CONTRACT: WorldInfo = contract::ANALYZER;
    type Input = Vec<SeriesWindow>;
    type Output = (Vec<Sample>, Vec<Event>);
}

impl Binding for Analyzer {
    type Exports = analyzer::Analyzer;
    type Pre = analyzer::AnalyzerPre<StoreState>;
    type Raw = types::Analysis;
    type Memo = ();

    fn add_to_linker(linker: &mut Linker<StoreState>) -> wasmtime::Result<()> {
        analyzer::Analyzer::add_to_linker::<_, HasSelf<StoreState>>(linker, |s| s)
    }

    fn pre(instance_pre: InstancePre<StoreState>) -> wasmtime::Result<Self::Pre> {
        analyzer::AnalyzerPre::new(instance_pre)
    }

    fn instantiate<'a>(
        pre: &'a Self::Pre,
        store: &'a mut Store<StoreState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Exports>> + Send + 'a {
        pre.instantiate_async(store)
    }

    fn init<'a>(
        exports: &'a Self::Exports,
        store: &'a mut Store<StoreState>,
        config: &'a str,
    ) -> CallFuture<'a, ()> {
        Box::pin(exports.call_init(store, config))
    }

    fn call<'a>(
        exports: &'a Self::Exports,
        store: &'a mut Store<StoreState>,
        windows: Vec<SeriesWindow>,
    ) -> CallFuture<'a, Self::Raw> {
        let windows = convert::windows_to_wit(windows);
        Box::pin(async move { exports.call_analyze(store, &windows).await })
    }

    fn check(
        analysis: Self::Raw,
        limits: &OutputLimits,
        (): &mut (),
        instance: &str,
    ) -> Result<(Vec<Sample>, Vec<Event>), OutputError> {
        let samples = convert::samples_from_wit(analysis.samples, limits)?;
        let events = convert::events_from_wit(analysis.events, instance, limits)?;
        Ok((samples, events))
    }
}
