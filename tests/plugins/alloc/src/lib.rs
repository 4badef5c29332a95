//! Test plugin: a collector whose `collect()` tries to allocate a huge buffer (1 GiB by
//! default, `{"mib": N}` to choose). The engine's memory cap must stop it with a message
//! naming the plugin and the limit, and the next call must get a fresh instance.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, parse_config};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Config {
    mib: Option<usize>,
}

struct Alloc {
    bytes: usize,
}

impl Collector for Alloc {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Option<Config> = parse_config(config)?;
        let mib = config.unwrap_or_default().mib.unwrap_or(1024);
        Ok(Alloc { bytes: mib << 20 })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        // Touch every byte so that nothing can be optimised away.
        let buffer = core::hint::black_box(vec![1u8; self.bytes]);
        let sum: u64 = buffer.iter().map(|&b| u64::from(b)).sum();
        out.sample("alloc_bytes", sum as f64);
        Ok(())
    }
}

telltale_sdk::export_collector!(Alloc);
