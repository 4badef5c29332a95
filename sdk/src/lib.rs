//! Write Telltale plugins in Rust.
//!
//! A Telltale plugin is a WebAssembly component built for `wasm32-wasip2` against the WIT
//! contract in `wit/plugin.wit` (package `telltale:plugin@0.3.0`). This crate generates the
//! guest bindings for you and adds a thin ergonomic layer:
//!
//! * a [`Collector`] or [`Analyzer`] trait: `init` builds your plugin's state from its JSON
//!   config once, then `collect`/`analyze` is called on every interval with `&mut self`;
//! * [`export_collector!`] / [`export_analyzer!`] to register your type as the component's
//!   exports;
//! * for collectors, `Samples`: the batch `collect` writes into
//!   (`out.sample("name", value).label("key", value)`, no allocation per sample); for
//!   analyzers, [`sample`] with [`Sample::label`]; [`now_ms`] and [`log`] (host imports),
//!   and [`parse_config`] to turn the JSON config into your own `serde` type with an
//!   `invalid-config` error when it does not fit.
//!
//! # Choosing the world
//!
//! Enable **exactly one** of the features `collector` or `analyzer`. They are features and
//! not two modules because the component-type sections of two worlds in one core module
//! would be merged by `wasm-component-ld` into a single world, and the resulting component
//! would lack the exports the host looks for.
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! # vendored by `telltale plugin new`, or the `sdk/` directory of a Telltale checkout
//! telltale-sdk = { path = "telltale-sdk", features = ["collector"] }
//! ```
//!
// The example below is compiled and run as a doc test with the `collector` feature; with
// `analyzer` it cannot compile (it implements a collector), so it is shown only.
#![cfg_attr(feature = "collector", doc = "```")]
#![cfg_attr(not(feature = "collector"), doc = "```ignore")]
//! use telltale_sdk::{Collector, PluginError, Samples};
//!
//! struct Hello;
//!
//! impl Collector for Hello {
//!     fn init(_config: &str) -> Result<Self, PluginError> {
//!         Ok(Hello)
//!     }
//!     fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
//!         out.sample("hello_value", 1.0).label("greeting", "world");
//!         Ok(())
//!     }
//! }
//!
//! telltale_sdk::export_collector!(Hello);
//! # fn main() {
//! #     let samples = telltale_sdk::collect_to_vec(&mut Hello).unwrap();
//! #     assert_eq!(samples[0].name, "hello_value");
//! # }
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to point the engine at. The quickest
//! start is `telltale plugin new NAME`, which writes such a crate with this SDK vendored;
//! `sdk/README.md` is the complete guide (worlds, grants, limits, naming, testing,
//! troubleshooting, and plugins in Python and JavaScript).
//!
//! # Testing natively
//!
//! The bindings compile for the host too: `cargo test` runs a plugin's logic without
//! WebAssembly. [`now_ms`] and [`log`] fall back to the system clock and stderr; capability
//! imports (`system::snapshot`, `files::read`) exist only inside the engine.

#![warn(missing_docs)]

#[cfg(all(feature = "collector", feature = "analyzer"))]
compile_error!(
    "telltale-sdk: enable exactly one of the features `collector` and `analyzer` \
     (a component implements one world; build each plugin crate on its own)"
);

#[cfg(not(any(feature = "collector", feature = "analyzer")))]
compile_error!(
    "telltale-sdk: enable one of the features `collector` or `analyzer`, e.g. \
     `telltale-sdk = { ..., features = [\"collector\"] }`"
);

// Lets the generated code and the export macros name this crate as `::telltale_sdk` both
// from inside it and from plugin crates.
extern crate self as telltale_sdk;

/// The bindings generated from the `collector` world. Plugin code rarely needs them
/// directly: the types are re-exported at the crate root.
#[cfg(all(feature = "collector", not(feature = "analyzer")))]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "full-collector",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "::telltale_sdk::bindings",
        runtime_path: "::telltale_sdk::__private::wit_bindgen::rt",
    });
}

/// The bindings generated from the `analyzer` world. Plugin code rarely needs them
/// directly: the types are re-exported at the crate root.
#[cfg(all(feature = "analyzer", not(feature = "collector")))]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "analyzer",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_world",
        default_bindings_module: "::telltale_sdk::bindings",
        runtime_path: "::telltale_sdk::__private::wit_bindgen::rt",
    });
}

#[cfg(any(feature = "collector", feature = "analyzer"))]
mod api;
#[cfg(feature = "collector")]
mod batch;
#[cfg(feature = "collector")]
pub mod http;
#[cfg(feature = "collector")]
pub mod processes;
#[cfg(any(feature = "collector", feature = "analyzer"))]
pub use api::*;

/// Implementation details used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    #[cfg(any(feature = "collector", feature = "analyzer"))]
    pub use crate::api::state::*;
}
