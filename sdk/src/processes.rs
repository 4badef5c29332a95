//! The machine's process table, read by the host (grant `processes: true`).
//!
//! ```ignore
//! use telltale_sdk::{Samples, processes};
//!
//! let mut out = Samples::new();
//! for p in processes::list() {
//!     out.sample("process_resident_memory_bytes", p.rss_bytes as f64)
//!         .label("pid", p.pid)
//!         .label("name", &p.name);
//! }
//! ```

pub use crate::bindings::telltale::plugin::processes::Process;

/// Every process of the machine (threads are not listed on their own), sorted by pid.
/// CPU percentages cover the interval since the host's previous refresh of the table and
/// are 0 the first time.
pub fn list() -> Vec<Process> {
    crate::bindings::telltale::plugin::processes::list()
}
