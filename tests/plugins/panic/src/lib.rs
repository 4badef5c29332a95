//! Test plugin: a collector whose `collect()` panics. The engine must report the panic
//! message with the plugin's name, re-instantiate it, and keep running.

use telltale_sdk::{Collector, PluginError, Samples};

struct Panic;

impl Collector for Panic {
    fn init(_config: &str) -> Result<Self, PluginError> {
        Ok(Panic)
    }

    fn collect(&mut self, _out: &mut Samples) -> Result<(), PluginError> {
        let calls = core::hint::black_box(1);
        panic!("the panic plugin gave up after {calls} call(s)");
    }
}

telltale_sdk::export_collector!(Panic);
