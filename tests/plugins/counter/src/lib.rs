//! Test plugin: a healthy collector whose `collect()` returns one sample,
//! `test_counter_calls_total`, counting the calls since `init`. The engine's tests swap it
//! in for a broken plugin on disk to check that a changed `.wasm` file is reloaded without
//! restarting the engine (a sample only this version emits appears).

use telltale_sdk::{Collector, PluginError, Samples};

struct Counter {
    calls: u64,
}

impl Collector for Counter {
    fn init(_config: &str) -> Result<Self, PluginError> {
        Ok(Counter { calls: 0 })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        self.calls += 1;
        out.sample("test_counter_calls_total", self.calls as f64);
        Ok(())
    }
}

telltale_sdk::export_collector!(Counter);
