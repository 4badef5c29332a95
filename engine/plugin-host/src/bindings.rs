//! Host-side bindings generated from `sdk/wit/plugin.wit`.
//!
//! The two worlds share the `types` and `host` interfaces. The collector world is generated
//! in full; the analyzer world reuses the collector's interface modules through `with`, so a
//! `Sample` or a `host::Host` implementation is one Rust type for both worlds.
//!
//! Imports and exports are async: host functions may await (the system snapshot runs on a
//! blocking thread) and guest calls can yield to tokio at every epoch tick, which is what
//! lets a deadline stop a spinning plugin without blocking a worker thread.

/// The `full-collector` world (the `collector` world with every capability imported): any
/// collector component links against it, whatever subset of capabilities it imports.
pub mod collector {
    wasmtime::component::bindgen!({
        world: "full-collector",
        path: "../../sdk/wit",
        imports: { default: async },
        exports: { default: async },
    });
}

/// The `analyzer` world: imports `host`; exports `init` and `analyze`.
pub mod analyzer {
    wasmtime::component::bindgen!({
        world: "analyzer",
        path: "../../sdk/wit",
        imports: { default: async },
        exports: { default: async },
        with: {
            "telltale:plugin/types": super::collector::telltale::plugin::types,
            "telltale:plugin/host": super::collector::telltale::plugin::host,
        },
    });
}

pub use collector::telltale::plugin::{files, gpu, host, http, processes, system, types};
