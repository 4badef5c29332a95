//! Test plugin: a collector that returns a huge output. The config chooses how:
//!
//! * `{"samples": N}`: N samples (default 1,000,000) named `flood_value`;
//! * `{"samples": 1, "name_bytes": N}`: a metric name N bytes long;
//! * `{"samples": 1, "label_value_bytes": N}`: a label value N bytes long;
//! * `{"output_bytes": N}`: N bytes written to stderr before returning.
//!
//! The engine must refuse the output with a message naming the plugin, the limit and its
//! value, and keep running.

use serde::Deserialize;
use telltale_sdk::{Collector, PluginError, Samples, parse_config};

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Config {
    samples: Option<usize>,
    name_bytes: Option<usize>,
    label_value_bytes: Option<usize>,
    output_bytes: Option<usize>,
}

struct Flood {
    config: Config,
}

impl Collector for Flood {
    fn init(config: &str) -> Result<Self, PluginError> {
        let config: Option<Config> = parse_config(config)?;
        Ok(Flood {
            config: config.unwrap_or_default(),
        })
    }

    fn collect(&mut self, out: &mut Samples) -> Result<(), PluginError> {
        let c = &self.config;
        if let Some(n) = c.output_bytes {
            let line = "x".repeat(99);
            for _ in 0..n / 100 {
                eprintln!("{line}");
            }
        }
        let name = match c.name_bytes {
            Some(n) => "f".repeat(n),
            None => "flood_value".to_string(),
        };
        let blob = c.label_value_bytes.map(|n| "v".repeat(n));
        let count = c.samples.unwrap_or(1_000_000);
        for i in 0..count {
            let s = out.sample(&name, i as f64);
            if let Some(blob) = &blob {
                s.label("blob", blob);
            }
        }
        Ok(())
    }
}

telltale_sdk::export_collector!(Flood);
