//! Test plugin: a collector whose `collect()` recurses without bound. The engine must
//! contain the stack overflow (a trap) and keep running.

use telltale_sdk::{Collector, PluginError, Samples};

struct Recurse;

/// Never reaches its base case in practice; `black_box` keeps the optimiser from turning
/// the recursion into a loop (the addition after the call is not a tail call).
fn depth(n: u64) -> u64 {
    if core::hint::black_box(n) == u64::MAX {
        return 0;
    }
    core::hint::black_box(depth(n + 1)).wrapping_add(n)
}

impl Collector for Recurse {
    fn init(_config: &str) -> Result<Self, PluginError> {
        Ok(Recurse)
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        out.sample("recurse_depth", depth(0) as f64);
        Ok(())
    }
}

telltale_sdk::export_collector!(Recurse);
