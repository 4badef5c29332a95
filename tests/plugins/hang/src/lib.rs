//! Test plugin: a collector whose `collect()` never returns. The engine's tests use it to
//! check that a per-call deadline stops a plugin that spins forever without blocking the
//! runtime, and that the instance is re-created afterwards.

use telltale_sdk::{Collector, PluginError, Samples};

struct Hang {
    counter: u64,
}

impl Collector for Hang {
    fn init(_config: &str) -> Result<Self, PluginError> {
        Ok(Hang { counter: 0 })
    }

    fn collect(&mut self, _out: &mut Samples) -> Result<(), PluginError> {
        loop {
            // black_box keeps the optimiser from proving the loop has no effect.
            self.counter = core::hint::black_box(self.counter.wrapping_add(1));
        }
    }
}

telltale_sdk::export_collector!(Hang);
